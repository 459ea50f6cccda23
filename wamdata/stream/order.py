"""The global order of an epoch: a pure function of (windows per shard, seed, epoch, shuffle window).

Shards are visited in a shuffled order; then each window moves by a random offset of at most half the
shuffle window (MosaicML Streaming's py1e idea), so windows of neighbouring shards mix but any stretch of
the order draws on a bounded number of shards: the reader's working set, and its RAM, stay bounded by the
window, not by the dataset.
"""

from __future__ import annotations

import numpy as np


def epoch_order(shard_sizes: np.ndarray, seed: int, epoch: int, shuffle_window: int) -> np.ndarray:
    """Window ids (0..N-1, shard s holding a contiguous range) in the order epoch ``epoch`` visits them.

    ``shuffle_window`` 0 keeps the natural order (shards and windows as stored).
    """
    shard_sizes = np.asarray(shard_sizes, dtype=np.int64)
    firsts = np.concatenate([[0], np.cumsum(shard_sizes)[:-1]])
    total = int(shard_sizes.sum())
    if shuffle_window <= 0:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    shards = rng.permutation(len(shard_sizes))
    laid_out = np.concatenate([np.arange(firsts[s], firsts[s] + shard_sizes[s]) for s in shards]).astype(np.int64)
    keys = np.arange(total) + rng.uniform(-shuffle_window / 2, shuffle_window / 2, size=total)
    return laid_out[np.argsort(keys, kind="stable")]
