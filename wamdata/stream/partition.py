"""Split the rest of an epoch's order over ranks and dataloader workers, every rank the same batch count.

Positions ``consumed, consumed + 1, ...`` of the epoch order are dealt out in global batches of
``world_size * batch_size``: global batch s gives rank r the positions
``consumed + s*G + r*B ... + B - 1``. Every rank therefore gets the same number of full batches (no DDP
hang, whatever the shard sizes), and after s global batches exactly ``consumed + s*G`` positions are used,
which is all a resume needs to know, whatever the world size was (elastic resume re-deals from there).

Tail policy, when the remaining windows are not a multiple of G:

* ``"pad"``: the last global batch is filled by repeating windows from the start of the epoch order, so
  every window appears at least once and only the padding (fewer than G windows) appears twice;
* ``"drop"``: the last partial global batch is dropped, so no window repeats and fewer than G are skipped
  this epoch (a different set each epoch when shuffling).

Within a rank, batch k goes to dataloader worker ``k % num_workers``: torch's DataLoader collects batches
from its workers round-robin, so the rank sees its batches in order.
"""

from __future__ import annotations

import numpy as np

TAIL_POLICIES = ("pad", "drop")


def num_batches(total: int, consumed: int, world_size: int, batch_size: int, tail: str) -> int:
    """Batches each rank yields for the rest of the epoch after ``consumed`` positions."""
    if tail not in TAIL_POLICIES:
        raise ValueError(f"tail policy must be one of {TAIL_POLICIES}, got {tail!r}")
    remaining = max(total - consumed, 0)
    per_global = world_size * batch_size
    return -(-remaining // per_global) if tail == "pad" else remaining // per_global


def rank_batches(
    total: int, consumed: int, world_size: int, rank: int, batch_size: int, tail: str
) -> np.ndarray:
    """Positions in the epoch order of this rank's remaining batches: shape (batches, batch_size)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batches = num_batches(total, consumed, world_size, batch_size, tail)
    steps = np.arange(batches, dtype=np.int64)[:, None] * (world_size * batch_size)
    positions = consumed + steps + rank * batch_size + np.arange(batch_size, dtype=np.int64)[None, :]
    return positions % total  # only the "pad" tail reaches past the end: it wraps to the epoch's start


def worker_batches(batches: np.ndarray, worker: int, num_workers: int) -> np.ndarray:
    """The batches (rows) dataloader worker ``worker`` of ``num_workers`` produces, in order."""
    return batches[worker::max(num_workers, 1)]
