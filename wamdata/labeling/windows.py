"""Training windows for the action models, read through ``wamdata.stream``.

The toy-world and debug-sized datasets these models train on in minutes fit in memory, so a trainer reads
its windows through the stream once and then samples minibatches from arrays: on a 2-core machine that keeps
the cores on the networks instead of on re-decoding the same video every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wamdata.format.reader import Dataset
from wamdata.stream import StreamConfig, StreamLoader, WindowSpec, WindowStream


@dataclass
class Windows:
    """Windows of one camera: frames (N, F, H, W, 3) uint8 and, where the episodes have them, normalized
    actions (N, k, A) with their mask; episode ids, sources and embodiments per window."""

    frames: np.ndarray
    actions: np.ndarray
    action_mask: np.ndarray
    episode_ids: np.ndarray
    anchors: np.ndarray
    sources: np.ndarray
    embodiments: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    def select(self, keep: np.ndarray) -> Windows:
        return Windows(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


def gap_for_fps(gap_seconds: float, fps: float) -> int:
    """A gap in seconds as a whole number of steps (at least one) at ``fps``."""
    return max(1, round(gap_seconds * fps))


def gap_steps(urls: Sequence[str], gap_seconds: float, sources: Sequence[str] | None = None) -> int:
    """The frame gap in steps for the sources' fps; every source read must share it (one WindowSpec)."""
    steps = set()
    for url in urls:
        for name, spec in Dataset.open(url).sources.items():
            if sources is None or name in sources:
                steps.add(gap_for_fps(gap_seconds, spec.fps))
    if len(steps) != 1:
        raise ValueError(f"gap of {gap_seconds}s is {sorted(steps)} steps across these sources; train on one fps")
    return steps.pop()


def load_windows(urls: Sequence[str], spec: WindowSpec, split: str | None, image_size: int,
                 sources: Sequence[str] | None = None, with_actions: bool = False,
                 max_windows: int | None = None, seed: int = 0) -> Windows:
    """Every window of ``split`` (all frames inside the episode) once, in a shuffled order so that
    ``max_windows`` takes a sample of episodes rather than the first shard."""
    config = StreamConfig(urls=tuple(urls), batch_size=64, window=spec, split=split,
                          image_size=(image_size, image_size), seed=seed, tail="pad")
    stream = WindowStream(config, rank=0, world_size=1)
    camera = stream.layout.cameras[0]
    parts: dict[str, list] = {k: [] for k in Windows.__dataclass_fields__}
    seen: set[int] = set()
    total = 0
    for batch in StreamLoader(stream):
        keep = batch[f"frame_mask/{camera}"].numpy().all(axis=1)
        keep &= np.array([int(w) not in seen for w in batch["window_id"]])
        if sources is not None:
            keep &= np.isin(np.asarray(batch["source"]), list(sources))
        if with_actions:
            keep &= batch["action_mask"].numpy().all(axis=(1, 2))
        seen.update(int(w) for w in batch["window_id"])
        parts["frames"].append(batch[f"frames/{camera}"].numpy()[keep])
        parts["actions"].append(batch["action"].numpy()[keep])
        parts["action_mask"].append(batch["action_mask"].numpy()[keep])
        for field, key in (("episode_ids", "episode_id"), ("anchors", "anchor"), ("sources", "source"),
                           ("embodiments", "embodiment")):
            parts[field].append(np.asarray(batch[key])[keep])
        total += int(keep.sum())
        if max_windows is not None and total >= max_windows:
            break
    windows = Windows(*(np.concatenate(parts[f]) for f in Windows.__dataclass_fields__))
    return windows if max_windows is None else windows.select(np.arange(min(max_windows, len(windows))))


def holdout(windows: Windows, every: int) -> tuple[Windows, Windows]:
    """(train, held-out) for a dataset without a val split: every ``every``-th episode, by sorted episode id,
    is held out, so the trainer and the evaluator agree on it without sharing state."""
    ids = np.unique(windows.episode_ids)
    held = np.isin(windows.episode_ids, ids[every - 1::every])
    return windows.select(~held), windows.select(held)


def load_split(urls: Sequence[str], spec: WindowSpec, split: str, image_size: int, holdout_every: int | None,
               **options: Any) -> Windows:
    """The dataset's ``split`` ("train" or "val"), or with ``holdout_every`` that split of every episode."""
    if holdout_every is None:
        return load_windows(urls, spec, split, image_size, **options)
    train, val = holdout(load_windows(urls, spec, None, image_size, **options), holdout_every)
    return train if split == "train" else val


def lam_windows(urls: Sequence[str], gap_seconds: float, split: str, image_size: int, holdout_every: int | None,
                sources: Sequence[str] | None = None, **options: Any) -> tuple[Windows, int]:
    """(frame t, frame t+gap) windows of ``split`` for a LAM, and the gap in steps at these sources' fps."""
    gap = gap_steps(urls, gap_seconds, sources)
    windows = load_split(urls, WindowSpec(horizon=1, frame_stride=gap), split, image_size, holdout_every,
                         sources=sources, **options)
    return windows, gap
