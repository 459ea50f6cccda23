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

Options: ``pose_joints``, ``point_joints``, the clip options (fps, short_side, clip_seconds,
stride_seconds), ``source`` (default "egodex"), ``camera`` (default "head"), ``video_fps`` (30);
``video``: codec fields for the stored clips (e.g. ``{pix_fmt: yuv444p}``).
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
from wamdata.media.decode import VideoDecodeError, iter_frames, probe_video
from wamdata.media.frames import resized_size
from wamdata.sources.base import Rejected, SourceAdapter, WorkItem, register
from wamdata.sources.clips import (
    Clip,
    ClipOptions,
    clip_episodes,
    cut_clips,
    probe,
    short_side_fit,
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


@register
class EgoDexSource(SourceAdapter):
    format = "egodex"

    def __init__(self, input: str, **options: Any) -> None:
        super().__init__(input, **options)
        self.root = Path(input)
        self.clip_options = ClipOptions.from_options(options)
        self.windows = "clip_seconds" in options
        self.pose_joints = tuple(options.get("pose_joints", POSE_JOINTS))
        self.point_joints = tuple(options.get("point_joints", POINT_JOINTS))
        if not set(WRISTS) <= set(self.pose_joints):
            raise ValueError(f"egodex: pose_joints must include the wrists {WRISTS}, got {self.pose_joints}")
        self.source = options.get("source", "egodex")
        self.camera = options.get("camera", "head")

    @cached_property
    def pairs(self) -> list[Path]:
        """Every <task>/<N>.hdf5 (its video is beside it)."""
        files = sorted(self.root.glob("*/*.hdf5"))
        if not files:
            raise FileNotFoundError(f"{self.root}: no <task>/<N>.hdf5 files (EgoDex layout)")
        return files

    def specs(self) -> list[SourceSpec]:
        size = None
        for hdf5 in self.pairs:
            try:
                info = probe_video(hdf5.with_suffix(".mp4"))
            except (VideoDecodeError, OSError):
                continue  # reading it quarantines it
            size = (info.width, info.height)
            break
        if size is None:
            raise FileNotFoundError(f"{self.root}: no readable <task>/<N>.mp4 beside the HDF5 files")
        width, height = size
        if self.clip_options.short_side is not None:
            width, height = resized_size(width, height, self.clip_options.short_side)
        state_slices, offset = [], 0
        for joint in self.pose_joints:
            state_slices.append(Slice(f"{joint}_pose", offset, offset + POSE_WIDTH, "m, 6-D rotation",
                                      f"{joint} world position and rotation"))
            offset += POSE_WIDTH
        for joint in self.point_joints:
            state_slices.append(Slice(f"{joint}_position", offset, offset + 3, "m", f"{joint} world position"))
            offset += 3
        action_slices = tuple(
            Slice(f"{wrist}_delta", i * POSE_WIDTH, (i + 1) * POSE_WIDTH, "m, 6-D rotation",
                  f"{wrist} pose change to the next step")
            for i, wrist in enumerate(WRISTS)
        )
        confidence_joints = (*WRISTS, *self.point_joints)
        return [SourceSpec(
            name=self.source,
            kind="human_demo",
            format=self.format,
            embodiment="human_hand",
            fps=self.clip_options.fps or float(self.options.get("video_fps", 30.0)),
            cameras={self.camera: CameraSpec(height, width, codec_with(self.options.get("video")).to_json())},
            arrays={
                "state": ArraySpec("float32", (offset,), tuple(state_slices)),
                "human_action": ArraySpec("float32", (len(WRISTS) * POSE_WIDTH,), action_slices,
                                          "wrist pose deltas (not robot actions)"),
                "confidence": ArraySpec("float32", (len(confidence_joints),), tuple(
                    Slice(joint, i, i + 1) for i, joint in enumerate(confidence_joints))),
            },
            uri=str(self.root),
            description="EgoDex dexterous human manipulation, head camera with tracked hands",
        )]

    def work_items(self) -> list[WorkItem]:
        return [WorkItem(key=str(p.relative_to(self.root).with_suffix("")), path=str(p)) for p in self.pairs]

    def read(self, item: WorkItem) -> Iterator[Episode | Rejected]:
        hdf5 = Path(item.path)
        video = hdf5.with_suffix(".mp4")
        if not video.is_file():
            raise FileNotFoundError(f"{hdf5}: its video {video.name} is missing")
        poses, confidences, intrinsic, attrs = self.load_tracking(hdf5)
        options = self.clip_options
        video_info = probe(video)
        expected = float(self.options.get("video_fps", 30.0))
        if options.fps is None and abs(video_info.fps - expected) > 1e-3:
            raise ValueError(f"{video}: {video_info.fps} fps, expected {expected} (set video_fps or fps)")
        if options.short_side is not None:
            width, height = resized_size(video_info.width, video_info.height, options.short_side)
            intrinsic = np.diag([width / video_info.width, height / video_info.height, 1.0]) @ intrinsic

        def arrays(clip: Clip) -> dict[str, np.ndarray]:
            indices = np.asarray(clip.source_indices)
            if indices[-1] >= len(confidences):
                raise ValueError(f"{hdf5}: {len(confidences)} tracked steps, but {video.name} has frame {indices[-1]}")
            transforms = poses[:, indices]
            pose_count = len(self.pose_joints)
            state = [np.concatenate([t[:, :3, 3], rotation_6d(t[:, :3, :3])], -1) for t in transforms[:pose_count]]
            state += [t[:, :3, 3] for t in transforms[pose_count:]]
            return {
                "state": np.concatenate(state, -1).astype(np.float32),
                "human_action": np.concatenate(
                    [pose_deltas(transforms[self.pose_joints.index(w)]) for w in WRISTS], -1
                ),
                "confidence": confidences[indices].astype(np.float32),
            }

        frames = iter_frames(video)
        requests = sliding_windows(options) if self.windows else whole_video()
        clips = cut_clips(frames, requests, options.fps, item.key, str(video), short_side_fit(options.short_side))
        task = hdf5.parent.name
        yield from clip_episodes(
            clips, self.source, self.camera, item.key,
            info={"task": task, "camera_intrinsic": intrinsic.tolist(), **attrs},
            language=attrs.get("llm_description") or attrs.get("description") or task.replace("_", " "),
            arrays=arrays,
        )

    def load_tracking(self, hdf5: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """(J, T, 4, 4) poses of pose then point joints, (T, C) confidences, 3x3 intrinsic, file attrs."""
        try:
            with h5py.File(hdf5, "r") as f:
                needed = [f"transforms/{j}" for j in (*self.pose_joints, *self.point_joints)]
                needed += [f"confidences/{j}" for j in (*WRISTS, *self.point_joints)] + ["camera/intrinsic"]
                missing = [name for name in needed if name not in f]
                if missing:
                    raise ValueError(f"{hdf5}: missing {missing}")
                poses = np.stack([f[f"transforms/{j}"][()] for j in (*self.pose_joints, *self.point_joints)])
                confidences = np.stack([f[f"confidences/{j}"][()] for j in (*WRISTS, *self.point_joints)], -1)
                intrinsic = np.asarray(f["camera/intrinsic"][()], np.float64)
                attrs = {k: _plain(v) for k, v in f.attrs.items()}
        except OSError as exc:
            raise OSError(f"{hdf5}: not a readable HDF5 file: {exc}") from exc
        if poses.shape[2:] != (4, 4) or intrinsic.shape != (3, 3):
            raise ValueError(f"{hdf5}: transforms are {poses.shape[2:]}, intrinsic {intrinsic.shape}")
        return poses, confidences, intrinsic, attrs


def _plain(value: Any) -> Any:
    """An HDF5 attribute as a JSON value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
