"""Run by tests/test_stream.py under ``torchrun --nnodes 2``: every rank streams its share of the windows,
then an all_reduce of per-window counts (gloo) proves the ranks together covered every window.

Usage: stream_torchrun_coverage.py OUT.json DATASET [DATASET ...]
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from wamdata.stream import StreamConfig, StreamLoader, WindowSpec, WindowStream


def main() -> None:
    out, urls = sys.argv[1], tuple(sys.argv[2:])
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    config = StreamConfig(urls=urls, batch_size=3, window=WindowSpec(anchor_every=2), split=None, seed=11,
                          shuffle_window=64)
    stream = WindowStream(config)  # rank and world size from torch.distributed
    counts = torch.zeros(len(stream.index), dtype=torch.int64)
    batches = 0
    for batch in StreamLoader(stream, num_workers=1):
        counts.index_add_(0, batch["window_id"], torch.ones_like(batch["window_id"]))
        batches += 1
    dist.all_reduce(counts)
    low, high = torch.tensor([batches]), torch.tensor([batches])
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump({
                "world_size": dist.get_world_size(), "batch_size": config.batch_size, "windows": len(counts),
                "covered": int((counts > 0).sum()), "duplicates": int(counts.sum() - len(counts)),
                "batches_min": int(low), "batches_max": int(high),
            }, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
