"""RoboMIND: one HDF5 per episode, laid out as
``<benchmark>/<robot_type>/<task>/success_episodes/<train|val>/<episode_id>/data/trajectory.hdf5``.

Robot types: h5_franka_1rgb, h5_ur_1rgb, h5_tienkung_xsens_1rgb, h5_agilex_3rgb and h5_franka_fr3_dual (dual
arm: ``_left`` / ``_right`` suffixed keys) and h5_sim_franka_3rgb (keys under ``franka/`` instead of
``master/``/``puppet/``). ``observations/rgb_images/<camera>`` holds one JPEG per step (cameras);
``observations/depth_images/<camera>`` is kept as a per-step array. Every other dataset becomes an array
named by its path (``puppet_end_effector_left``, ...); ``action`` is the teleoperation master's joint
positions and ``state`` the follower's (``puppet``, or ``franka`` in simulation), left arm then right arm,
with named slices. Streams of unequal length are not guessed at: the episode is quarantined with each
stream's length. The task folder name is the language instruction. One work item is one episode, in natural order.

Options: ``kind`` (default "teleop"; the simulated robots, h5_sim_*, are "sim").
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from wamdata.format.schema import ArraySpec, CameraSpec, Episode, Slice, SourceKind, SourceSpec
from wamdata.media.codec import codec_for_frames
from wamdata.sources.base import (
    SourceAdapter,
    WorkItem,
    common_length,
    laid_end_to_end,
    natural_key,
    open_hdf5,
    register,
    safe_name,
)

ROBOMIND_FPS = 30.0  # recording rate of the RoboMIND robots; files carry no timing
TRAJECTORY = "trajectory.hdf5"
RGB_GROUP = "observations/rgb_images"
DEPTH_GROUP = "observations/depth_images"
ARM_SUFFIXES = ("", "_left", "_right")


def _decode_image(data: Any) -> np.ndarray:
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


def _decode_depth(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray) and data.dtype != np.uint8 or getattr(data, "ndim", 1) > 1:
        return np.asarray(data)
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    return np.asarray(Image.open(io.BytesIO(raw)))


def _arm_keys(f: h5py.File, role: str) -> list[str]:
    """``<role>/joint_position`` for one arm, or its _left and _right versions, in that order."""
    return [f"{role}/joint_position{s}" for s in ARM_SUFFIXES if f"{role}/joint_position{s}" in f]


class RobomindEpisode:
    """The parts of one trajectory file, in the order they are stored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # named by the folders above it, which may lie above a relative input (``wamdata ingest robomind .``)
        parts = path.absolute().parts
        self.split, self.task, self.robot_type = parts[-4], parts[-6], parts[-7]

    @property
    def source_name(self) -> str:
        return safe_name(self.robot_type.removeprefix("h5_")).lower()

    def roles(self, f: h5py.File) -> tuple[str | None, str | None]:
        follower = "puppet" if "puppet" in f else "franka" if "franka" in f else None
        return ("master" if "master" in f else None), follower

    def read(self, with_pixels: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int]]:
        """(arrays, frames, length of every stream); with_pixels=False decodes one frame per camera only."""
        arrays: dict[str, np.ndarray] = {}
        frames: dict[str, np.ndarray] = {}
        lengths: dict[str, int] = {}
        with open_hdf5(self.path) as f:
            master, follower = self.roles(f)
            for role, name in ((master, "action"), (follower, "state")):
                keys = _arm_keys(f, role) if role else []
                if keys:
                    arrays[name] = np.concatenate([f[k][()].reshape(len(f[k]), -1) for k in keys], axis=1)
                    lengths.update({k: len(f[k]) for k in keys})
            joint_keys = {k for role in (master, follower) if role for k in _arm_keys(f, role)}

            def visit(name: str, obj: Any) -> None:
                if not isinstance(obj, h5py.Dataset) or name in joint_keys:
                    return
                lengths[name] = len(obj)
                if name.startswith(RGB_GROUP + "/"):
                    camera = safe_name(name.removeprefix(RGB_GROUP + "/"))
                    stop = len(obj) if with_pixels else 1
                    frames[camera] = np.stack([_decode_image(obj[i]) for i in range(stop)])
                elif name.startswith(DEPTH_GROUP + "/"):
                    stop = len(obj) if with_pixels else 1
                    arrays[f"depth_{safe_name(name.removeprefix(DEPTH_GROUP + '/'))}"] = np.stack(
                        [_decode_depth(obj[i]) for i in range(stop)])
                elif obj.dtype.kind in "biuf":
                    arrays[safe_name(name)] = obj[()]

            f.visititems(visit)
        return arrays, frames, lengths

    def joint_slices(self, name: str) -> tuple[Slice, ...]:
        with open_hdf5(self.path) as f:
            role = self.roles(f)[0 if name == "action" else 1]
            keys = _arm_keys(f, role) if role else []
            arms = [key.rsplit("joint_position", 1)[1].lstrip("_") or "arm" for key in keys]
            widths = [int(np.prod(f[key].shape[1:])) for key in keys]
        return laid_end_to_end([(f"{arm}_joint_position", width) for arm, width in zip(arms, widths, strict=True)],
                               "rad")


@register
class RobomindSource(SourceAdapter):
    format = "robomind"

    @dataclass(frozen=True)
    class Options:
        """``kind``: the source kind of the real robots (simulated ones, h5_sim_*, are always "sim")."""

        kind: SourceKind = "teleop"

    def __init__(self, input: str, **options: Any) -> None:
        super().__init__(input, **options)
        self.root = Path(input)

    @cached_property
    def episodes(self) -> list[RobomindEpisode]:
        # the layout names the files, not a suffix: find_files would also take the other HDF5 files around them
        paths = sorted(self.root.rglob(f"success_episodes/*/*/data/{TRAJECTORY}"),
                       key=lambda p: natural_key(self.relative(p)))
        if not paths:
            raise FileNotFoundError(f"{self.root}: no */success_episodes/<split>/<episode>/data/{TRAJECTORY}")
        return [RobomindEpisode(p) for p in paths]

    def _spec_of(self, episode: RobomindEpisode) -> SourceSpec:
        arrays, frames, _ = episode.read(with_pixels=False)
        cameras = {}
        for camera, first in frames.items():
            height, width = first.shape[1:3]
            cameras[camera] = CameraSpec(height, width, codec_for_frames(height, width).to_json())
        specs = {
            name: ArraySpec(a.dtype.name, a.shape[1:], episode.joint_slices(name) if name in ("action", "state")
                            else ())
            for name, a in arrays.items()
        }
        kind = "sim" if "sim" in episode.robot_type else self.options.kind
        return SourceSpec(
            name=episode.source_name, kind=kind, format=self.format,
            embodiment=safe_name(episode.robot_type.removeprefix("h5_").removeprefix("sim_")).lower(),
            fps=ROBOMIND_FPS, cameras=cameras, arrays=specs, uri=str(self.root),
            description=f"RoboMIND {episode.robot_type}",
        )

    def describe(self) -> list[SourceSpec]:
        """Each robot type's spec, from its first episode that can be read (one per type is enough)."""
        specs: dict[str, SourceSpec] = {}
        for episode in self.episodes:
            if episode.source_name not in specs:
                try:
                    specs[episode.source_name] = self._spec_of(episode)
                except (OSError, ValueError, KeyError):
                    continue  # that file's work item is quarantined with the reason; the next one describes the type
        return list(specs.values())

    def work_items(self) -> list[WorkItem]:
        return [WorkItem(key=self.relative(e.path.parent.parent), path=str(e.path),
                         options={"index": i}) for i, e in enumerate(self.episodes)]

    def read(self, item: WorkItem) -> Iterator[Episode]:
        episode = self.episodes[item.options["index"]]
        arrays, frames, lengths = episode.read(with_pixels=True)
        num_steps = common_length(lengths, str(episode.path))
        spec = self.spec_of(episode.source_name)
        yield Episode(
            source=spec.name, native_key=item.key, num_steps=num_steps, frames=frames,
            arrays=arrays, language=episode.task.replace("_", " "), split=safe_name(episode.split),
            info={"robot_type": episode.robot_type, "task": episode.task},
        )
