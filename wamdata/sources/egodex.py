"""EgoDex: ``<task>/<N>.mp4`` (head camera, 30 Hz) with ``<task>/<N>.hdf5`` holding the tracked poses.

HDF5 layout: ``camera/intrinsic`` (3x3), ``transforms/<joint>`` (T x 4 x 4 world poses of the camera,
wrists and finger joints), ``confidences/<joint>`` (T), file attributes with the task description
(``llm_description``, possibly others). Each pair is one work item and, by default, one episode (the whole
video; ``clip_seconds`` cuts sliding windows instead). Poses are taken at the source frame of each output
frame, so resampling (``fps``) keeps them aligned with the video.

Arrays (no robot action: ``has_actions`` is false):
- ``state``: per pose joint (default camera, leftHand, rightHand) its world position and rotation as 6-D
  (the first two columns of the rotation matrix, continuous unlike quaternions or Euler angles), then per
  point joint (default the ten fingertips) its world position; each a named slice.
- ``human_action``: per wrist, the change of pose to the next step (position delta in world frame, rotation
  delta R_t^T R_t+1 as 6-D), what an inverse dynamics model can learn from; the last step, which has no
  next pose, is zero.
- ``confidence``: the tracking confidence of each wrist and point joint.

The episodes' ``info.camera_intrinsic`` is the file's ``camera/intrinsic`` brought to the stored frames: the
crop or pad and the resize that bring each video to the source's one frame size (``wamdata.sources.clips``)
shift the principal point and scale the focal lengths, in pixel coordinates from the frame's top-left
corner (as a principal point at (W/2, H/2) for a centred camera implies).

Options: ``pose_joints``, ``point_joints``, ``fps``, ``short_side``, ``fit`` ("crop" or "pad"), ``aspect``
("16:9"), ``clip_seconds`` (sliding windows; default: one episode per video), ``stride_seconds``, ``video``
(codec fields of the stored clips, e.g. ``{pix_fmt: yuv444p}``), ``source`` (default "egodex"), ``camera``
(default "head"), ``kind`` (default "human_demo"), ``embodiment`` (default "human_hand").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from wamdata.format.schema import ArraySpec, Episode, Slice, SourceKind
from wamdata.media.decode import VideoInfo, iter_frames
from wamdata.sources.base import Rejected, WorkItem, described, json_value, register
from wamdata.sources.clips import (
    PROBE_ERRORS,
    Clip,
    SourceNaming,
    VideoClipSource,
    WindowOptions,
    probe,
    sliding_windows,
    whole_video,
)

POSE_JOINTS = ("camera", "leftHand", "rightHand")
WRISTS = ("leftHand", "rightHand")
POINT_JOINTS = tuple(
    f"{side}{finger}Tip" for side in ("left", "right")
    for finger in ("Thumb", "IndexFinger", "MiddleFinger", "RingFinger", "LittleFinger")
)
POSE_WIDTH = 9  # xyz + 6-D rotation


def probe_beside(hdf5: Path) -> VideoInfo:
    """The format of the video beside a tracking file (FileNotFoundError naming the tracking file if there is none)."""
    video = hdf5.with_suffix(".mp4")
    if not video.is_file():
        raise FileNotFoundError(f"{hdf5}: its video {video.name} is missing")
    return probe(video)


def rotation_6d(rotations: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices as (..., 6): their first two columns."""
    return np.concatenate([rotations[..., :, 0], rotations[..., :, 1]], axis=-1)


def pose_deltas(transforms: np.ndarray) -> np.ndarray:
    """(T, 4, 4) poses -> (T, 9): position change and relative rotation to the next step; last step zero."""
    out = np.zeros((len(transforms), POSE_WIDTH), np.float32)
    if len(transforms) > 1:
        current, following = transforms[:-1], transforms[1:]
        out[:-1, :3] = following[:, :3, 3] - current[:, :3, 3]
        relative = np.swapaxes(current[:, :3, :3], 1, 2) @ following[:, :3, :3]
        out[:-1, 3:] = rotation_6d(relative)
    return out


@dataclass(frozen=True)
class EgoDexOptions(WindowOptions, SourceNaming):
    source: str = "egodex"
    camera: str = "head"
    kind: SourceKind = "human_demo"
    embodiment: str = "human_hand"
    pose_joints: tuple[str, ...] = POSE_JOINTS
    point_joints: tuple[str, ...] = POINT_JOINTS

    def __post_init__(self) -> None:
        super().__post_init__()
        if not set(WRISTS) <= set(self.pose_joints):
            raise ValueError(f"option pose_joints must include the wrists {WRISTS}, got {list(self.pose_joints)}")


@register
class EgoDexSource(VideoClipSource):
    format = "egodex"
    Options = EgoDexOptions

    @cached_property
    def pairs(self) -> list[Path]:
        """Every <task>/<N>.hdf5 (its video is beside it)."""
        files = sorted(self.root.glob("*/*.hdf5"))
        if not files:
            raise FileNotFoundError(f"{self.root}: no <task>/<N>.hdf5 files (EgoDex layout)")
        return files

    def key_of(self, hdf5: Path) -> str:
        return str(hdf5.relative_to(self.root).with_suffix(""))

    def video_formats(self) -> dict[str, VideoInfo | Exception]:
        return described({self.key_of(hdf5): hdf5 for hdf5 in self.pairs}, probe_beside, keep=PROBE_ERRORS)

    def description(self) -> str:
        return "EgoDex dexterous human manipulation, head camera with tracked hands"

    def arrays(self) -> dict[str, ArraySpec]:
        pose_joints, point_joints = self.options.pose_joints, self.options.point_joints
        state_slices, offset = [], 0
        for joint in pose_joints:
            state_slices.append(Slice(f"{joint}_pose", offset, offset + POSE_WIDTH, "m, 6-D rotation",
                                      f"{joint} world position and rotation"))
            offset += POSE_WIDTH
        for joint in point_joints:
            state_slices.append(Slice(f"{joint}_position", offset, offset + 3, "m", f"{joint} world position"))
            offset += 3
        action_slices = tuple(
            Slice(f"{wrist}_delta", i * POSE_WIDTH, (i + 1) * POSE_WIDTH, "m, 6-D rotation",
                  f"{wrist} pose change to the next step")
            for i, wrist in enumerate(WRISTS)
        )
        confidence_joints = (*WRISTS, *point_joints)
        return {
            "state": ArraySpec("float32", (offset,), tuple(state_slices)),
            "human_action": ArraySpec("float32", (len(WRISTS) * POSE_WIDTH,), action_slices,
                                      "wrist pose deltas (not robot actions)"),
            "confidence": ArraySpec("float32", (len(confidence_joints),), tuple(
                Slice(joint, i, i + 1) for i, joint in enumerate(confidence_joints))),
        }

    def work_items(self) -> list[WorkItem]:
        return [WorkItem(key=self.key_of(p), path=str(p)) for p in self.pairs]

    def read(self, item: WorkItem) -> Iterator[Episode | Rejected]:
        video_info = self.format_of(item.key)  # a missing or unreadable video fails here, with the reason kept
        hdf5 = Path(item.path)
        video = hdf5.with_suffix(".mp4")
        poses, confidences, intrinsic, attrs = self.load_tracking(hdf5)
        intrinsic = self.frame_format.fit.pixel_transform(video_info.height, video_info.width) @ intrinsic
        pose_joints = self.options.pose_joints

        def arrays(clip: Clip) -> dict[str, np.ndarray]:
            indices = np.asarray(clip.source_indices)
            if indices[-1] >= len(confidences):
                raise ValueError(f"{hdf5}: {len(confidences)} tracked steps, but {video.name} has frame {indices[-1]}")
            transforms = poses[:, indices]
            pose_count = len(pose_joints)
            state = [np.concatenate([t[:, :3, 3], rotation_6d(t[:, :3, :3])], -1) for t in transforms[:pose_count]]
            state += [t[:, :3, 3] for t in transforms[pose_count:]]
            return {
                "state": np.concatenate(state, -1).astype(np.float32),
                "human_action": np.concatenate(
                    [pose_deltas(transforms[pose_joints.index(w)]) for w in WRISTS], -1
                ),
                "confidence": confidences[indices].astype(np.float32),
            }

        options = self.options
        requests = whole_video() if options.clip_seconds is None else sliding_windows(options.clip_seconds,
                                                                                         options.stride_seconds)
        task = hdf5.parent.name
        yield from self.episodes(
            self.clips(iter_frames(video), requests, item.key, str(video)), item.key,
            info={"task": task, "camera_intrinsic": intrinsic.tolist(), **attrs},
            language=attrs.get("llm_description") or attrs.get("description") or task.replace("_", " "),
            arrays=arrays,
        )

    def load_tracking(self, hdf5: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """(J, T, 4, 4) poses of pose then point joints, (T, C) confidences, 3x3 intrinsic, file attrs."""
        try:
            with h5py.File(hdf5, "r") as f:
                joints = (*self.options.pose_joints, *self.options.point_joints)
                needed = [f"transforms/{j}" for j in joints]
                needed += [f"confidences/{j}" for j in (*WRISTS, *self.options.point_joints)] + ["camera/intrinsic"]
                missing = [name for name in needed if name not in f]
                if missing:
                    raise ValueError(f"{hdf5}: missing {missing}")
                poses = np.stack([f[f"transforms/{j}"][()] for j in joints])
                confidences = np.stack([f[f"confidences/{j}"][()] for j in (*WRISTS, *self.options.point_joints)], -1)
                intrinsic = np.asarray(f["camera/intrinsic"][()], np.float64)
                attrs = {k: json_value(v) for k, v in f.attrs.items()}
        except OSError as exc:
            raise OSError(f"{hdf5}: not a readable HDF5 file: {exc}") from exc
        if poses.shape[2:] != (4, 4) or intrinsic.shape != (3, 3):
            raise ValueError(f"{hdf5}: transforms are {poses.shape[2:]}, intrinsic {intrinsic.shape}")
        return poses, confidences, intrinsic, attrs

