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

from wamdata.format.shards import load_npy
from wamdata.media.codec import VideoCodec
from wamdata.media.decode import decode_frame_ranges
from wamdata.media.frames import resize_frames
from wamdata.stream.index import WindowSpec
from wamdata.stream.labels import SidecarLabels
from wamdata.stream.normalize import Normalizer


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


def padded_chunk(array: np.ndarray | None, start: int, length: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """array[start : start + length] padded to (length, width) float32, and the mask of real values."""
    out = np.zeros((length, width), dtype=np.float32)
    mask = np.zeros((length, width), dtype=bool)
    if array is not None and start < len(array):
        chunk = array[start: start + length].reshape(min(length, len(array) - start), -1)
        out[: len(chunk), : chunk.shape[1]] = chunk
        mask[: len(chunk), : chunk.shape[1]] = True
    return out, mask


@dataclass(frozen=True)
class ParsedEpisode:
    """An episode's meta, its action/state already normalized, and its cameras still encoded."""

    dataset: int
    meta: dict
    arrays: dict[str, np.ndarray]
    videos: dict[str, bytes]


class WindowBuilder:
    def __init__(
        self,
        layout: WindowLayout,
        codecs: dict[tuple[str, str], VideoCodec],
        normalizer: Normalizer | None,
        labels: Sequence[SidecarLabels] = (),
    ) -> None:
        self.layout = layout
        self.codecs = codecs  # (source, camera) -> codec
        self.normalizer = normalizer
        self.labels = list(labels)
        self.source_id = {s: i for i, s in enumerate(layout.sources)}
        self.embodiment_id = {e: i for i, e in enumerate(layout.embodiments)}

    def parse(self, members: dict[str, bytes], dataset: int) -> ParsedEpisode:
        meta = json.loads(members["meta.json"])
        arrays = {}
        for name in ("action", "state"):
            if name in meta["arrays"]:
                array = load_npy(members[f"{name}.npy"])
                arrays[name] = array if self.normalizer is None else self.normalizer.normalize(
                    array, meta["embodiment"], name)
        videos = {}
        for camera in self.layout.cameras:
            if camera in meta["cameras"]:
                videos[camera] = members[f"{camera}.{self.codecs[(meta['source'], camera)].extension}"]
        return ParsedEpisode(dataset, meta, arrays, videos)

    def frame_steps(self, episode: ParsedEpisode, anchor: int) -> tuple[np.ndarray, np.ndarray]:
        steps = anchor + self.layout.spec.frame_offsets
        return steps, (steps >= 0) & (steps < episode.meta["num_steps"])

    def build_group(self, group: Sequence[tuple[ParsedEpisode, int, int]]) -> list[dict[str, object]]:
        """Windows (episode, anchor, window id), in order; each video of the group is opened and decoded
        once for all the windows that need it (see decode_frame_ranges)."""
        wanted: dict[tuple[int, str], list[tuple[int, int]]] = {}
        for episode, anchor, _ in group:
            steps, inside = self.frame_steps(episode, anchor)
            if inside.any():
                for camera in episode.videos:
                    wanted.setdefault((id(episode), camera), []).append(
                        (int(steps[inside][0]), int(steps[inside][-1]) + 1))
        episodes = {id(e): e for e, _, _ in group}
        clips = {}
        for (key, camera), ranges in wanted.items():
            try:
                clips[(key, camera)] = iter(decode_frame_ranges(episodes[key].videos[camera], ranges))
            except ValueError as e:  # VideoDecodeError included: name the episode, the loader names the shard
                raise ValueError(f"episode {episodes[key].meta['episode_id']}, camera {camera}: {e}") from e
        return [self._window(episode, anchor, window_id, clips) for episode, anchor, window_id in group]

    def _window(self, episode: ParsedEpisode, anchor: int, window_id: int, clips: dict) -> dict[str, object]:
        layout, meta = self.layout, episode.meta
        steps, inside = self.frame_steps(episode, anchor)
        sample: dict[str, object] = {}
        for camera in layout.cameras:
            frames = np.zeros((len(steps), *layout.image_size, 3), dtype=np.uint8)
            mask = inside & (camera in episode.videos)
            if mask.any():
                clip = next(clips[(id(episode), camera)])
                frames[mask] = resize_frames(clip[steps[mask] - steps[mask][0]], layout.image_size)
            sample[f"frames/{camera}"] = frames if layout.image_dtype == "uint8" else frames.astype(np.float32) / 255
            sample[f"frame_mask/{camera}"] = mask
        for name, length, width in (("action", layout.spec.action_horizon, layout.action_dim),
                                    ("state", 1, layout.state_dim)):
            values, mask = padded_chunk(episode.arrays.get(name), anchor, length, width)
            sample[name], sample[f"{name}_mask"] = (values, mask) if name == "action" else (values[0], mask[0])
        for labels in self.labels:
            sample.update(labels.window(episode.dataset, meta["episode_id"], anchor, layout.spec.action_horizon))
        sample.update(
            window_id=np.int64(window_id), anchor=np.int64(anchor), episode_id=meta["episode_id"],
            source=meta["source"], embodiment=meta["embodiment"], source_id=np.int64(self.source_id[meta["source"]]),
            embodiment_id=np.int64(self.embodiment_id[meta["embodiment"]]), language=meta["language"] or "",
        )
        return sample
