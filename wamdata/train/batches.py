"""A batch source over arrays held in memory: the labelers' training windows, read once through the stream
(``wamdata.labeling.windows`` says why they are in memory). A run too large for memory trains from a
``wamdata.stream.StreamLoader``, a batch source of the same shape (``state_dict()`` / ``load_state_dict()``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np


class MemoryBatches:
    """Minibatches drawn with replacement from arrays (row i of every array is sample i), forever.

    The state is the numpy generator's, with a fingerprint of the arrays: a resumed run draws what the
    uninterrupted one would have drawn, and a state saved over other arrays is refused."""

    def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int, seed: int) -> None:
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(f"arrays of one non-zero length needed, got lengths {sorted(sizes)}")
        self.arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
        self.size = sizes.pop()
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self._fingerprint: str | None = None

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while True:
            pick = self.rng.integers(self.size, size=self.batch_size)
            yield {name: a[pick] for name, a in self.arrays.items()}

    def fingerprint(self) -> str:
        """sha256 of the arrays' names, dtypes, shapes and bytes."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name, a in sorted(self.arrays.items()):
                digest.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
                digest.update(memoryview(a).cast("B"))
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "windows": self.size, "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["fingerprint"] != self.fingerprint():
            raise ValueError(f"saved while drawing from other windows ({state['windows']} then, {self.size} now, "
                             "sha256 differs): the dataset or the window options changed")
        self.rng.bit_generator.state = state["rng"]
