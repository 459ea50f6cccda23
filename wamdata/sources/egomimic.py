"""EgoMimic: robomimic-style HDF5 files of human-hand and robot demonstrations seen by the same Aria camera.

Layout of each file: ``data/demo_<i>/obs/<camera>`` (T, H, W, 3) uint8 images (``front_img_1``, and on the
robot ``left_wrist_img`` / ``right_wrist_img``), ``data/demo_<i>/obs/ee_pose`` (T, 3 or 6: one or two end
effector / hand positions), on the robot ``obs/joint_positions`` (T, J) and ``actions_joints_act``
(T, 100, J), and ``actions_xyz_act`` (T, 100, 3 or 6): at each step, the next 100 positions. Optional
``mask/train`` and ``mask/valid`` name the demos of each split (robomimic's convention).

Both variants are kept, as two sources: a file is "robot" when its demos have ``obs/joint_positions``, else
"hand" (option ``embodiment`` overrides). Hand demos have no robot action: their future-position chunks
are stored as ``human_action`` (``has_actions`` false); robot demos store ``actions_joints_act`` as
``action`` and ``actions_xyz_act`` as ``ee_action``. Each demo is one work item and one episode (or
sliding windows with ``clip_seconds``); frames are read one at a time from the file and every array is
taken at each output frame's source step.

Options: ``fps_native`` (rate of the recordings, default 30), ``embodiment`` ("hand" / "robot"),
``language``, the clip options (fps, short_side, clip_seconds, stride_seconds), ``source_prefix``
(default "egomimic": sources ``egomimic_hand`` and ``egomimic_robot``); ``video``: codec fields for the stored
clips (e.g. ``{pix_fmt: yuv444p}``).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from wamdata.format.schema import ArraySpec, CameraSpec, Episode, Slice, SourceSpec
from wamdata.media.codec import codec_with
from wamdata.media.frames import resized_size
from wamdata.sources.base import Rejected, SourceAdapter, WorkItem, register
from wamdata.sources.clips import (
    Clip,
    ClipOptions,
    array_frames,
    clip_episodes,
    cut_clips,
    short_side_fit,
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


@register
class EgoMimicSource(SourceAdapter):
    format = "egomimic"

    def __init__(self, input: str, **options: Any) -> None:
        super().__init__(input, **options)
        self.root = Path(input)
        self.clip_options = ClipOptions.from_options(options)
        self.windows = "clip_seconds" in options
        self.native_fps = float(options.get("fps_native", 30.0))
        self.prefix = options.get("source_prefix", "egomimic")

    @cached_property
    def files(self) -> list[Path]:
        files = [self.root] if self.root.is_file() else sorted(self.root.rglob("*.hdf5"))
        if not files:
            raise FileNotFoundError(f"{self.root}: no EgoMimic .hdf5 files")
        return files

    def variant_of(self, f: h5py.File, path: Path) -> str:
        if "embodiment" in self.options:
            if self.options["embodiment"] not in VARIANTS:
                raise ValueError(f"egomimic: embodiment must be one of {sorted(VARIANTS)}")
            return self.options["embodiment"]
        demos = sorted(f.get("data", {}))
        if not demos:
            raise ValueError(f"{path}: no data/demo_* groups")
        return "robot" if "obs/joint_positions" in f["data"][demos[0]] else "hand"

    @cached_property
    def layouts(self) -> dict[str, dict[str, Any]]:
        """Per variant: the camera sizes and per-step array shapes, from the first demo of its first file."""
        layouts: dict[str, dict[str, Any]] = {}
        for path in self.files:
            with h5py.File(path, "r") as f:
                variant = self.variant_of(f, path)
                if variant in layouts:
                    continue
                demo = f["data"][sorted(f["data"])[0]]
                cameras = {name: ds.shape[1:3] for name, ds in demo["obs"].items()
                           if ds.ndim == 4 and ds.shape[-1] == 3 and ds.dtype == np.uint8}
                if PRIMARY_CAMERA not in cameras:
                    raise ValueError(f"{path}: no obs/{PRIMARY_CAMERA} images (found {sorted(cameras)})")
                missing = [p for p in ARRAYS[variant].values() if p not in demo]
                if missing:
                    raise ValueError(f"{path}: {variant} demos need {missing}")
                arrays = {name: demo[p].shape[1:] for name, p in ARRAYS[variant].items()}
                layouts[variant] = {"cameras": cameras, "arrays": arrays}
        return layouts

    def source_name(self, variant: str) -> str:
        return f"{self.prefix}_{variant}"

    def specs(self) -> list[SourceSpec]:
        specs = []
        for variant, layout in sorted(self.layouts.items()):
            cameras = {}
            for name, (height, width) in layout["cameras"].items():
                if self.clip_options.short_side is not None:
                    width, height = resized_size(width, height, self.clip_options.short_side)
                cameras[name] = CameraSpec(height, width, codec_with(self.options.get("video")).to_json())
            kind, embodiment = VARIANTS[variant]
            specs.append(SourceSpec(
                name=self.source_name(variant),
                kind=kind,
                format=self.format,
                embodiment=embodiment,
                fps=self.clip_options.fps or self.native_fps,
                cameras=cameras,
                arrays={name: ArraySpec("float32", tuple(shape), _position_slices(shape[-1]) if name != "action"
                                        else (), DESCRIPTIONS.get(name))
                        for name, shape in layout["arrays"].items()},
                uri=str(self.root),
                description=f"EgoMimic {variant} demonstrations",
            ))
        return specs

    def work_items(self) -> list[WorkItem]:
        items = []
        for path in self.files:
            with h5py.File(path, "r") as f:
                for demo in sorted(f.get("data", {}), key=_demo_number):
                    key = f"{path.relative_to(self.root) if path != self.root else path.name}/{demo}"
                    items.append(WorkItem(key=key, path=str(path), options={"demo": demo}))
        return items

    def read(self, item: WorkItem) -> Iterator[Episode | Rejected]:
        path, demo_name = Path(item.path), item.options["demo"]
        options = self.clip_options
        with h5py.File(path, "r") as f:
            variant = self.variant_of(f, path)
            layout = self.layouts[variant]
            demo = f["data"][demo_name]
            where = f"{path}: data/{demo_name}"
            lengths = {name: len(demo["obs"][name]) for name in layout["cameras"]}
            lengths.update({name: len(demo[p]) for name, p in ARRAYS[variant].items() if p in demo})
            if len(set(lengths.values())) != 1 or len(lengths) != len(layout["cameras"]) + len(ARRAYS[variant]):
                raise ValueError(f"{where}: cameras and arrays disagree or are missing: lengths {lengths}")
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

            fit = short_side_fit(options.short_side)

            def cameras(clip: Clip) -> dict[str, np.ndarray]:
                return {
                    name: np.stack([fit(rgb) if fit else rgb for rgb in at_steps(demo["obs"][name], clip)])
                    for name in layout["cameras"] if name != PRIMARY_CAMERA
                }

            frames = array_frames(demo["obs"][PRIMARY_CAMERA], self.native_fps)
            requests = sliding_windows(options) if self.windows else whole_video()
            for episode in clip_episodes(
                cut_clips(frames, requests, options.fps, item.key, where, fit),
                self.source_name(variant), PRIMARY_CAMERA, item.key,
                info={"file": path.name, "demo": demo_name, "variant": variant},
                language=self.options.get("language"),
                arrays=arrays,
                cameras=cameras,
            ):
                if isinstance(episode, Episode):
                    episode.split = split
                yield episode


def _demo_number(name: str) -> tuple[int, str]:
    """demo_2 before demo_10."""
    suffix = name.rsplit("_", 1)[-1]
    return (int(suffix), name) if suffix.isdigit() else (-1, name)
