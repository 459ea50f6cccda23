"""Per-embodiment normalization of per-step arrays (action, state) from dataset.json stats, and its inverse.

``"bounds"`` maps [q01, q99] to [-1, 1] and clips (robust to outliers, the usual choice for action
chunks); ``"mean_std"`` standardizes. Dimensions whose bounds (or std) are degenerate map to 0 and come
back as the bound (or mean) on the inverse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wamdata.format.stats import merge_summaries

MODES = ("bounds", "mean_std")
EPSILON = 1e-8


@dataclass(frozen=True)
class ArrayNorm:
    offset: np.ndarray  # subtracted
    scale: np.ndarray  # then divided by; 0 where the dimension is constant
    clip: bool

    def apply(self, x: np.ndarray) -> np.ndarray:
        safe = np.where(self.scale > EPSILON, self.scale, 1.0)
        y = np.where(self.scale > EPSILON, (x - self.offset) / safe, 0.0).astype(np.float32)
        return np.clip(y, -1.0, 1.0) if self.clip else y

    def invert(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) * self.scale + self.offset).astype(np.float32)


def merged_stats(stats_docs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Embodiment -> array -> statistics over the ``stats.by_embodiment`` sections of several dataset.json
    files (``format.stats.merge_summaries``: exact moments, widest quantile bounds)."""
    parts: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for doc in stats_docs:
        for embodiment, arrays in doc.get("by_embodiment", {}).items():
            for name, summary in arrays.items():
                parts.setdefault(embodiment, {}).setdefault(name, []).append(summary)
    return {embodiment: {name: merge_summaries(summaries) for name, summaries in arrays.items()}
            for embodiment, arrays in parts.items()}


class Normalizer:
    """Normalizes arrays named in ``arrays`` per embodiment; arrays without stats pass through unchanged."""

    def __init__(self, stats_docs: Sequence[dict[str, Any]], mode: str = "bounds", arrays: Sequence[str] = ()):
        if mode not in MODES:
            raise ValueError(f"normalization mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.norms: dict[tuple[str, str], ArrayNorm] = {}
        for embodiment, by_array in merged_stats(stats_docs).items():
            for name in arrays:
                if name in by_array:
                    self.norms[(embodiment, name)] = self._norm(by_array[name])

    def _norm(self, s: dict[str, np.ndarray]) -> ArrayNorm:
        if self.mode == "bounds":
            return ArrayNorm(offset=(s["q99"] + s["q01"]) / 2, scale=(s["q99"] - s["q01"]) / 2, clip=True)
        return ArrayNorm(offset=s["mean"], scale=s["std"], clip=False)

    def normalize(self, x: np.ndarray, embodiment: str, name: str) -> np.ndarray:
        norm = self.norms.get((embodiment, name))
        return np.asarray(x, dtype=np.float32) if norm is None else norm.apply(x)

    def unnormalize(self, y: np.ndarray, embodiment: str, name: str) -> np.ndarray:
        """The trainer's inverse: model outputs (..., dims of this embodiment) back to native units."""
        norm = self.norms.get((embodiment, name))
        return np.asarray(y, dtype=np.float32) if norm is None else norm.invert(y)
