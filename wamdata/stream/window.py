"""One training window from an episode's encoded members: frames, action chunk, state, masks, labels.

Keys of a window (all numpy; torch's default collate stacks them):

* ``frames/<camera>``: (K, H, W, 3) uint8 (or float32 in [0, 1]) at ``t + k * frame_stride``,
  k in [-context, horizon]; ``frame_mask/<camera>``: (K,) bool, False for steps outside the episode or a
  camera the episode does not have (those frames are zeros);
* ``action``: (action_horizon, action_dim) float32, normalized; ``action_mask``: same shape, False for
  steps past the episode's end, dims the embodiment does not have, and episodes without actions;
* ``state``: (state_dim,) float32 at t, normalized; ``state_mask``: (state_dim,) bool;
* ``labels/<labeler>/<name>`` (action_horizon, *shape) and ``labels/<labeler>/<name>_mask`` (action_horizon,)
  from label side-cars, when asked for;
* ``window_id``, ``anchor``, ``source_id``, ``embodiment_id`` (int64), ``episode_id``, ``source``,
  ``embodiment``, ``language`` (str).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from wamdata.shards import load_npy
from wamdata.stream.index import WindowSpec
from wamdata.stream.labels import SidecarLabels
from wamdata.stream.normalize import Normalizer
from wamdata.video import VideoCodec, decode_frames


@dataclass(frozen=True)
class WindowLayout:
    """Shapes every window of a stream shares, so windows of different sources batch together."""

    spec: WindowSpec
    cameras: tuple[str, ...]
    image_size: tuple[int, int]
    image_dtype: str
    action_dim: int
    state_dim: int
    sources: tuple[str, ...]
    embodiments: tuple[str, ...]


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w, 3) uint8 -> (K, H, W, 3) uint8 with antialiased bilinear resampling."""
    if frames.shape[1:3] == tuple(size):
        return frames
    chw = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    out = torch.nn.functional.interpolate(chw, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def padded_chunk(array: np.ndarray | None, start: int, length: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """array[start : start + length] padded to (length, width) float32, and the mask of real values."""
    out = np.zeros((length, width), dtype=np.float32)
    mask = np.zeros((length, width), dtype=bool)
    if array is not None and start < len(array):
        chunk = array[start: start + length].reshape(min(length, len(array) - start), -1)
        out[: len(chunk), : chunk.shape[1]] = chunk
        mask[: len(chunk), : chunk.shape[1]] = True
    return out, mask


class WindowBuilder:
    def __init__(
        self,
        layout: WindowLayout,
        codecs: dict[tuple[str, str], VideoCodec],
        normalizer: Normalizer | None,
        labels: Sequence[SidecarLabels] = (),
        decode_backend: str = "auto",
    ) -> None:
        self.layout = layout
        self.codecs = codecs  # (source, camera) -> codec
        self.normalizer = normalizer
        self.labels = list(labels)
        self.decode_backend = decode_backend
        self.source_id = {s: i for i, s in enumerate(layout.sources)}
        self.embodiment_id = {e: i for i, e in enumerate(layout.embodiments)}

    def build(self, members: dict[str, bytes], anchor: int, window_id: int, dataset: int) -> dict[str, object]:
        layout, spec = self.layout, self.layout.spec
        meta = json.loads(members["meta.json"])
        num_steps, source, embodiment = meta["num_steps"], meta["source"], meta["embodiment"]
        steps = anchor + spec.frame_offsets
        inside = (steps >= 0) & (steps < num_steps)
        sample: dict[str, object] = {}
        for camera in layout.cameras:
            frames = np.zeros((len(steps), *layout.image_size, 3), dtype=np.uint8)
            mask = inside & (camera in meta["cameras"])
            if mask.any():
                first, last = int(steps[mask][0]), int(steps[mask][-1])
                codec = self.codecs[(source, camera)]
                clip = decode_frames(members[f"{camera}.{codec.extension}"], first, last + 1, self.decode_backend)
                frames[mask] = resize_frames(clip[steps[mask] - first], layout.image_size)
            sample[f"frames/{camera}"] = frames if layout.image_dtype == "uint8" else frames.astype(np.float32) / 255
            sample[f"frame_mask/{camera}"] = mask
        arrays = {name: load_npy(members[f"{name}.npy"]) for name in ("action", "state") if name in meta["arrays"]}
        for name, length, width in (("action", spec.action_horizon, layout.action_dim), ("state", 1, layout.state_dim)):
            array = arrays.get(name)
            if array is not None and self.normalizer is not None:
                array = self.normalizer.normalize(array, embodiment, name)
            values, mask = padded_chunk(array, anchor, length, width)
            sample[name], sample[f"{name}_mask"] = (values, mask) if name == "action" else (values[0], mask[0])
        for labels in self.labels:
            sample.update(labels.window(dataset, meta["episode_id"], anchor, spec.action_horizon))
        sample.update(
            window_id=np.int64(window_id), anchor=np.int64(anchor), episode_id=meta["episode_id"], source=source,
            embodiment=embodiment, source_id=np.int64(self.source_id[source]),
            embodiment_id=np.int64(self.embodiment_id[embodiment]), language=meta["language"] or "",
        )
        return sample
