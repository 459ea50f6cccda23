"""EgoMimic: robomimic-style HDF5 files of human-hand and robot demonstrations seen by the same Aria camera.

Layout of each file: ``data/demo_<i>/obs/<camera>`` (T, H, W, 3) uint8 images (``front_img_1``, and on the
robot ``left_wrist_img`` / ``right_wrist_img``), ``data/demo_<i>/obs/ee_pose`` (T, 3 or 6: one or two end
effector / hand positions), on the robot ``obs/joint_positions`` (T, J) and ``actions_joints_act``
(T, 100, J), and ``actions_xyz_act`` (T, 100, 3 or 6): at each step, the next 100 positions. Optional
``mask/train`` and ``mask/valid`` name the demos of each split (robomimic's convention).

Both variants are kept, as two sources: a file is "robot" when its demos have ``obs/joint_positions``, else
"hand" (option ``variant`` overrides). Hand demos have no robot action: their future-position chunks
are stored as ``human_action`` (``has_actions`` false); robot demos store ``actions_joints_act`` as
``action`` and ``actions_xyz_act`` as ``ee_action``. Each demo is one work item and one episode (or
sliding windows with ``clip_seconds``); frames are read one at a time from the file and every array is
taken at each output frame's source step.

Every camera of a source has one frame size over all its demos: demos whose images differ go through the same
fit as video (``wamdata.sources.clips``: centre crop to the most common aspect ratio, or ``fit: pad``), each
camera resolved on its own; ``short_side`` applies to every camera. A file that cannot be opened, or a demo
without the primary camera or the variant's arrays, is quarantined with its reason; the rest goes in.

Options: ``fps_native`` (rate of the recordings, default 30), ``variant`` ("hand" / "robot"; default: by
the file's arrays), ``language``, ``fps``, ``short_side``, ``fit`` ("crop" or "pad"), ``aspect`` ("16:9"),
``clip_seconds`` (sliding windows; default: one episode per demo), ``stride_seconds``, ``source_prefix``
(default "egomimic": sources ``egomimic_hand`` and ``egomimic_robot``), ``video`` (codec fields of the stored
clips, e.g. ``{pix_fmt: yuv444p}``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from wamdata.format.schema import ArraySpec, Episode, Slice, SourceSpec
from wamdata.media.decode import VideoInfo
from wamdata.sources.base import (
    Rejected,
    SourceAdapter,
    WorkItem,
    common_length,
    described,
    entry_of,
    find_files,
    natural_key,
    register,
    require_positive,
)
from wamdata.sources.clips import (
    Clip,
    FrameFormat,
    WindowOptions,
    array_frames,
    camera_spec,
    clip_episodes,
    cut_clips,
    resolve_format,
    sliding_windows,
    whole_video,
)

VARIANTS = {"hand": ("human_demo", "human_hand"), "robot": ("teleop", "egomimic_robot")}
PRIMARY_CAMERA = "front_img_1"
# Array name in the dataset -> path inside a demo, per variant.
ARRAYS = {
    "hand": {"state": "obs/ee_pose", "human_action": "actions_xyz_act"},
    "robot": {"state": "obs/ee_pose", "joint_positions": "obs/joint_positions", "action": "actions_joints_act",
              "ee_action": "actions_xyz_act"},
}
DESCRIPTIONS = {
    "state": "end effector (robot) or hand (human) positions in the camera frame",
    "human_action": "the next 100 hand positions at each step (not robot actions)",
    "action": "the next 100 joint positions at each step",
    "ee_action": "the next 100 end effector positions at each step",
}


def _position_slices(width: int) -> tuple[Slice, ...]:
    """Named xyz slices of an (..., 3) or (..., 6) position array (one arm / hand, or left then right)."""
    if width == 3:
        return (Slice("xyz", 0, 3, "m"),)
    if width == 6:
        return (Slice("left_xyz", 0, 3, "m"), Slice("right_xyz", 3, 6, "m"))
    return ()


@dataclass(frozen=True)
class EgoMimicOptions(WindowOptions):
    fps_native: float = 30.0
    variant: Literal["hand", "robot"] | None = None
    language: str | None = None
    source_prefix: str = "egomimic"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "fps_native")


@dataclass
class Demo:
    """What one demo holds, read from the file's metadata: its images' sizes and its arrays' shapes."""

    steps: int
    cameras: dict[str, tuple[int, int]]  # name -> (height, width)
    arrays: dict[str, tuple[int, ...]]  # dataset array name -> per-step shape


@dataclass
class DemoFile:
    """One file's variant and its demos, each a Demo or why it cannot be read."""

    variant: str
    demos: dict[str, Demo | Exception]


@register
class EgoMimicSource(SourceAdapter):
    format = "egomimic"
    Options = EgoMimicOptions

    def __init__(self, input: str, **options: Any) -> None:
        super().__init__(input, **options)
        self.root = Path(input)

    @cached_property
    def files(self) -> dict[str, Path]:
        """Every .hdf5 file below the input (or the one file given), by its path relative to the input."""
        return {self.relative(p): p for p in find_files(self.root, (".hdf5",), "EgoMimic files")}

    @cached_property
    def scanned(self) -> dict[str, DemoFile | Exception]:
        """Each file's demos, read once from its metadata; a file that cannot be opened keeps the error."""
        return described(self.files, self.scan)

    def scan(self, path: Path) -> DemoFile:
        with h5py.File(path, "r") as f:
            demos = sorted(f.get("data", {}), key=natural_key)
            if not demos:
                raise ValueError(f"{path}: no data/demo_* groups")
            variant = self.options.variant or ("robot" if "obs/joint_positions" in f["data"][demos[0]] else "hand")
            return DemoFile(variant, {name: _demo_layout(f["data"][name], variant, f"{path}: data/{name}")
                                      for name in demos})

    def demos(self, variant: str) -> dict[str, Demo]:
        """The readable demos of a variant, by work item key."""
        return {f"{key}/{name}": demo for key, file in self.scanned.items() if isinstance(file, DemoFile)
                and file.variant == variant for name, demo in file.demos.items() if isinstance(demo, Demo)}

    @cached_property
    def layouts(self) -> dict[str, tuple[Demo, dict[str, FrameFormat]]]:
        """Per variant with a readable demo: its first demo (the cameras and arrays every demo must have) and
        each camera's frame format over all its demos."""
        layouts = {}
        for variant in VARIANTS:
            demos = self.demos(variant)
            if not demos:
                continue
            first = next(iter(demos.values()))
            formats = {}
            for camera in first.cameras:
                sizes = {key: VideoInfo(d.steps, self.options.fps_native, d.cameras[camera][1], d.cameras[camera][0],
                                        "uint8") for key, d in demos.items() if camera in d.cameras}
                formats[camera] = resolve_format(sizes, self.options,
                                                 f"source {self.source_name(variant)!r} camera {camera!r}")
            layouts[variant] = (first, formats)
        return layouts

    def source_name(self, variant: str) -> str:
        return f"{self.options.source_prefix}_{variant}"

    def describe(self) -> list[SourceSpec]:
        if not self.layouts:
            reasons = [str(r) for f in self.scanned.values()
                       for r in ([f] if isinstance(f, Exception) else f.demos.values()) if isinstance(r, Exception)]
            raise ValueError(f"{self.root}: no readable EgoMimic demo ({reasons[0] if reasons else 'none found'})")
        specs = []
        for variant, (first, formats) in sorted(self.layouts.items()):
            kind, embodiment = VARIANTS[variant]
            specs.append(SourceSpec(
                name=self.source_name(variant),
                kind=kind,
                format=self.format,
                embodiment=embodiment,
                fps=formats[PRIMARY_CAMERA].fps,
                cameras={name: camera_spec(fmt, self.options.video) for name, fmt in formats.items()},
                arrays={name: ArraySpec("float32", shape, _position_slices(shape[-1]) if name != "action"
                                        else (), DESCRIPTIONS.get(name))
                        for name, shape in first.arrays.items()},
                uri=str(self.root),
                description=f"EgoMimic {variant} demonstrations",
            ))
        return specs

    def work_items(self) -> list[WorkItem]:
        items = []
        for key, file in self.scanned.items():
            path = str(self.files[key])
            if isinstance(file, Exception):
                items.append(WorkItem(key=key, path=path, options={"demo": None}))
                continue
            items += [WorkItem(key=f"{key}/{name}", path=path, options={"demo": name}) for name in file.demos]
        return items

    def read(self, item: WorkItem) -> Iterator[Episode | Rejected]:
        path, demo_name = Path(item.path), item.options["demo"]
        file_key = item.key if demo_name is None else item.key[: -len(demo_name) - 1]
        file = entry_of(self.scanned, file_key)
        demo_layout = entry_of(file.demos, demo_name)
        variant = file.variant
        first, formats = self.layouts[variant]
        where = f"{path}: data/{demo_name}"
        if set(demo_layout.cameras) != set(first.cameras) or set(demo_layout.arrays) != set(first.arrays):
            raise ValueError(f"{where}: cameras {sorted(demo_layout.cameras)} and arrays {sorted(demo_layout.arrays)}"
                             f", but the first {variant} demo has {sorted(first.cameras)} and {sorted(first.arrays)}")
        with h5py.File(path, "r") as f:
            demo = f["data"][demo_name]
            split = "train"
            for mask_name, split_name in (("valid", "val"), ("train", "train")):
                names = [n.decode() if isinstance(n, bytes) else n for n in f.get(f"mask/{mask_name}", [])]
                if demo_name in names:
                    split = split_name
                    break

            def at_steps(dataset: h5py.Dataset, clip: Clip) -> np.ndarray:
                # h5py reads a sorted list of distinct indices in one call; np.unique + take restores
                # the repeats of a rate above the native one.
                steps, inverse = np.unique(clip.source_indices, return_inverse=True)
                return dataset[steps.tolist()][inverse]

            def arrays(clip: Clip) -> dict[str, np.ndarray]:
                return {name: at_steps(demo[p], clip).astype(np.float32) for name, p in ARRAYS[variant].items()}

            def cameras(clip: Clip) -> dict[str, np.ndarray]:
                return {name: np.stack([formats[name].fit(rgb) for rgb in at_steps(demo["obs"][name], clip)])
                        for name in formats if name != PRIMARY_CAMERA}

            primary = formats[PRIMARY_CAMERA]
            frames = array_frames(demo["obs"][PRIMARY_CAMERA], self.options.fps_native)
            options = self.options
            requests = whole_video() if options.clip_seconds is None else sliding_windows(options.clip_seconds,
                                                                                             options.stride_seconds)
            for episode in clip_episodes(
                cut_clips(frames, requests, primary.resample, item.key, where, primary.fit),
                self.source_name(variant), PRIMARY_CAMERA, item.key,
                info={"file": path.name, "demo": demo_name, "variant": variant},
                language=options.language,
                arrays=arrays,
                cameras=cameras,
            ):
                if isinstance(episode, Episode):
                    episode.split = split
                yield episode


def _demo_layout(demo: h5py.Group, variant: str, where: str) -> Demo | Exception:
    """A demo's cameras and arrays, or why it cannot be ingested (no primary camera, a missing array, streams of
    unequal length)."""
    obs = demo.get("obs", {})
    cameras = {name: ds.shape[1:3] for name, ds in obs.items()
               if isinstance(ds, h5py.Dataset) and ds.ndim == 4 and ds.shape[-1] == 3 and ds.dtype == np.uint8}
    if PRIMARY_CAMERA not in cameras:
        return ValueError(f"{where}: no obs/{PRIMARY_CAMERA} images (found {sorted(cameras)})")
    missing = [p for p in ARRAYS[variant].values() if p not in demo]
    if missing:
        return ValueError(f"{where}: {variant} demos need {missing}")
    lengths = {name: len(obs[name]) for name in cameras}
    lengths.update({name: len(demo[p]) for name, p in ARRAYS[variant].items()})
    try:
        steps = common_length(lengths, where)
    except ValueError as exc:
        return exc
    return Demo(steps, cameras, {name: demo[p].shape[1:] for name, p in ARRAYS[variant].items()})
