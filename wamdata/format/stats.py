"""Normalization statistics of per-step arrays, mergeable across shards, sources and workers.

mean/std/min/max merge exactly (Chan's parallel update in float64). Quantiles need a mergeable summary:
numpy has none, and the sketch libraries (KLL and friends) have ~1% rank error, too coarse for the q01/q99
bounds trainers normalize with. So each summary keeps, per dimension, up to ``SKETCH_SIZE`` weighted order
statistics (exact while a part is smaller than that). Each merge adds at most total / (2 * SKETCH_SIZE) of
rank error, so parts are merged as a balanced tree (``merge_all``): the error of the result stays below
log2(parts) / (2 * SKETCH_SIZE) of the count, 0.1% for a thousand parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SKETCH_SIZE = 4096
QUANTILES = {"q01": 0.01, "q99": 0.99}


def _compress(values: np.ndarray, weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort (values, weights) and, if longer than size, keep size points at evenly spaced ranks."""
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    if len(values) <= size:
        return values, weights
    cumulative = np.cumsum(weights)
    total = cumulative[-1]
    targets = (np.arange(size) + 0.5) * (total / size)
    picked = np.searchsorted(cumulative, targets, side="left").clip(0, len(values) - 1)
    return values[picked], np.full(size, total / size)


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Linear interpolation between order statistics; equals numpy's default when all weights are 1."""
    centres = np.cumsum(weights) - weights + (weights - 1) / 2
    total = weights.sum()
    return float(np.interp(q * (total - 1), centres, values))


@dataclass
class ArrayStats:
    """Running statistics of an array's last axis over all steps seen."""

    count: int
    mean: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray
    sketch_values: list[np.ndarray]
    sketch_weights: list[np.ndarray]

    @classmethod
    def of(cls, array: np.ndarray) -> ArrayStats:
        """Statistics of one (num_steps, ...) array; trailing axes are flattened into dimensions."""
        x = np.asarray(array, dtype=np.float64).reshape(len(array), -1)
        if len(x) == 0:
            raise ValueError("statistics of an empty array")
        mean = x.mean(axis=0)
        sketches = [_compress(x[:, d], np.ones(len(x)), SKETCH_SIZE) for d in range(x.shape[1])]
        return cls(
            count=len(x),
            mean=mean,
            m2=((x - mean) ** 2).sum(axis=0),
            min=x.min(axis=0),
            max=x.max(axis=0),
            sketch_values=[v for v, _ in sketches],
            sketch_weights=[w for _, w in sketches],
        )

    def merge(self, other: ArrayStats) -> ArrayStats:
        if self.mean.shape != other.mean.shape:
            raise ValueError(f"cannot merge statistics of width {self.mean.shape} and {other.mean.shape}")
        count = self.count + other.count
        delta = other.mean - self.mean
        sketches = [
            _compress(np.concatenate([sv, ov]), np.concatenate([sw, ow]), SKETCH_SIZE)
            for sv, ov, sw, ow in zip(
                self.sketch_values, other.sketch_values, self.sketch_weights, other.sketch_weights, strict=True
            )
        ]
        return ArrayStats(
            count=count,
            mean=self.mean + delta * other.count / count,
            m2=self.m2 + other.m2 + delta**2 * self.count * other.count / count,
            min=np.minimum(self.min, other.min),
            max=np.maximum(self.max, other.max),
            sketch_values=[v for v, _ in sketches],
            sketch_weights=[w for _, w in sketches],
        )

    def summary(self) -> dict[str, Any]:
        """The dataset.json entry: count and one value per dimension for each statistic."""
        out: dict[str, Any] = {
            "count": int(self.count),
            "mean": self.mean.tolist(),
            "std": np.sqrt(self.m2 / self.count).tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
        }
        for name, q in QUANTILES.items():
            out[name] = [
                _weighted_quantile(v, w, q) for v, w in zip(self.sketch_values, self.sketch_weights, strict=True)
            ]
        return out


def merge_all(parts: list[ArrayStats]) -> ArrayStats:
    """Merge parts pairwise, level by level, so no value passes through more than log2(n) compressions."""
    if not parts:
        raise ValueError("merge_all of no statistics")
    while len(parts) > 1:
        parts = [parts[i].merge(parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


StatsByArray = dict[str, ArrayStats]


def merge_stats(parts: list[StatsByArray]) -> StatsByArray:
    """Merge per-array statistics of several parts (shards, workers, sources)."""
    names = sorted({name for part in parts for name in part})
    return {name: merge_all([part[name] for part in parts if name in part]) for name in names}


def floating_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays statistics are kept for: floating-point per-step arrays (action, state, ...)."""
    return {name: a for name, a in sorted(arrays.items()) if np.issubdtype(a.dtype, np.floating) and len(a)}


class StatsAccumulator:
    """Buffers episodes' arrays and folds them into exact-as-possible parts of about part_steps steps."""

    def __init__(self, part_steps: int = 1 << 16) -> None:
        self.part_steps = part_steps
        self.buffer: dict[str, list[np.ndarray]] = {}
        self.buffered_steps = 0
        self.parts: list[StatsByArray] = []

    def add(self, arrays: dict[str, np.ndarray]) -> None:
        for name, array in floating_arrays(arrays).items():
            self.buffer.setdefault(name, []).append(array)
        self.buffered_steps += max((len(a) for a in arrays.values()), default=0)
        if self.buffered_steps >= self.part_steps:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.parts.append({name: ArrayStats.of(np.concatenate(a)) for name, a in self.buffer.items()})
        self.buffer = {}
        self.buffered_steps = 0

    def result(self) -> StatsByArray:
        self.flush()
        return merge_stats(self.parts)


def stats_document(
    by_source: dict[str, StatsByArray], embodiment_of: dict[str, str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``stats`` section of dataset.json: per source, and per embodiment merged over its sources.

    An array whose width differs between sources of one embodiment (a Panda with a 6-D wiping action and a
    7-D gripper action, or simulator states of different scenes) has no common statistics: it is left out of
    that embodiment's entry and keeps its per-source ones.
    """
    sources_of: dict[str, list[str]] = {}
    for source in sorted(by_source):
        sources_of.setdefault(embodiment_of[source], []).append(source)
    by_embodiment = {}
    for embodiment, sources in sources_of.items():
        parts = [by_source[s] for s in sources]
        widths: dict[str, set[tuple[int, ...]]] = {}
        for part in parts:
            for name, st in part.items():
                widths.setdefault(name, set()).add(st.mean.shape)
        mergeable = {name for name, shapes in widths.items() if len(shapes) == 1}
        by_embodiment[embodiment] = merge_stats([{n: st for n, st in p.items() if n in mergeable} for p in parts])
    return {
        "by_source": {s: {a: st.summary() for a, st in sorted(by_source[s].items())} for s in sorted(by_source)},
        "by_embodiment": {
            e: {a: st.summary() for a, st in sorted(by_embodiment[e].items())} for e in sorted(by_embodiment)
        },
    }


def merge_summaries(summaries: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Several datasets' dataset.json entries of one array combined: count, mean and std exactly (pooled
    moments), min and max exactly, and the widest q01 / q99 (quantiles of a union cannot be recovered from the
    parts' quantiles, and the widest bounds never clip a value either part kept)."""
    parts = [{k: np.asarray(v, dtype=np.float64) for k, v in s.items()} for s in summaries]
    counts = np.array([p["count"] for p in parts], dtype=np.float64)
    total = counts.sum()
    mean = sum(n * p["mean"] for n, p in zip(counts, parts, strict=True)) / total
    second = sum(n * (p["std"] ** 2 + p["mean"] ** 2) for n, p in zip(counts, parts, strict=True)) / total
    return {
        "count": total, "mean": mean, "std": np.sqrt(np.maximum(second - mean**2, 0.0)),
        "min": np.minimum.reduce([p["min"] for p in parts]), "max": np.maximum.reduce([p["max"] for p in parts]),
        "q01": np.minimum.reduce([p["q01"] for p in parts]), "q99": np.maximum.reduce([p["q99"] for p in parts]),
    }

