"""The window index: every training window of one or more datasets, numbered 0..N-1.

A window is (episode, anchor step t). Windows are numbered dataset by dataset, episode by episode in
episodes.parquet order, anchor by anchor; episodes.parquet lists episodes in shard order, so the windows
of one shard form one contiguous range. This index is the single truth the order, the partition and the
resume arithmetic work on; it holds a few integers per episode, never per window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wamdata.format.reader import Dataset
from wamdata.format.schema import SchemaError


@dataclass(frozen=True)
class WindowSpec:
    """Which steps a window around anchor t covers.

    Frames at t + k * frame_stride for k in [-context, horizon]; the action chunk a[t : t + action_horizon];
    state at t. Anchors are every ``anchor_every``-th step of an episode, starting at 0.
    """

    context: int = 0
    horizon: int = 0
    frame_stride: int = 1
    action_horizon: int = 1
    anchor_every: int = 1

    def __post_init__(self) -> None:
        if self.context < 0 or self.horizon < 0:
            raise ValueError(f"context and horizon must be >= 0, got {self.context}, {self.horizon}")
        if self.frame_stride < 1 or self.action_horizon < 1 or self.anchor_every < 1:
            raise ValueError("frame_stride, action_horizon and anchor_every must be >= 1")

    @property
    def frame_offsets(self) -> np.ndarray:
        return np.arange(-self.context, self.horizon + 1, dtype=np.int64) * self.frame_stride

    def anchors_of(self, num_steps: np.ndarray) -> np.ndarray:
        return -(-np.asarray(num_steps, dtype=np.int64) // self.anchor_every)


class WindowIndex:
    """Windows of ``datasets`` (episodes of ``split`` only, or all if None) under ``spec``."""

    def __init__(self, datasets: Sequence[Dataset], spec: WindowSpec, split: str | None = None) -> None:
        if not datasets:
            raise ValueError("a window index needs at least one dataset")
        self.datasets = list(datasets)
        self.spec = spec
        dataset_of, row_of, num_steps, shard_keys = [], [], [], []
        for d, dataset in enumerate(self.datasets):
            columns = dataset.episodes.select(["split", "num_steps", "shard"]).to_pydict()
            rows = [i for i, s in enumerate(columns["split"]) if split is None or s == split]
            dataset_of += [d] * len(rows)
            row_of += rows
            num_steps += [columns["num_steps"][i] for i in rows]
            shard_keys += [(d, columns["shard"][i]) for i in rows]
        if not row_of:
            raise ValueError(f"no episodes of split {split!r} in {[d.url for d in self.datasets]}")
        self.dataset_of = np.asarray(dataset_of, dtype=np.int32)
        self.row_of = np.asarray(row_of, dtype=np.int64)
        self.num_steps = np.asarray(num_steps, dtype=np.int64)
        anchors = spec.anchors_of(self.num_steps)
        self.episode_first = np.concatenate([[0], np.cumsum(anchors)]).astype(np.int64)
        # Shards as contiguous episode ranges; a shard seen twice means episodes.parquet is not in shard order.
        starts = [0] + [i for i in range(1, len(shard_keys)) if shard_keys[i] != shard_keys[i - 1]]
        self.shards = [shard_keys[i] for i in starts]
        if len(set(self.shards)) != len(self.shards):
            raise SchemaError("episodes.parquet is not grouped by shard; rewrite the dataset with wamdata")
        self.shard_first = self.episode_first[np.asarray(starts + [len(shard_keys)])]

    def __len__(self) -> int:
        return int(self.episode_first[-1])

    @property
    def shard_sizes(self) -> np.ndarray:
        """Windows per shard, shards in index order."""
        return np.diff(self.shard_first)

    def locate(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(episode number in this index, anchor step) of each window id."""
        windows = np.asarray(windows, dtype=np.int64)
        if windows.size and (windows.min() < 0 or windows.max() >= len(self)):
            raise IndexError(f"window ids must lie in [0, {len(self)})")
        episode = np.searchsorted(self.episode_first, windows, side="right") - 1
        return episode, (windows - self.episode_first[episode]) * self.spec.anchor_every

    def shard_of_episode(self, episode: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.shard_first, self.episode_first[episode], side="right") - 1
