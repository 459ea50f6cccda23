"""Where a trainer runs: one process (CUDA if there is a GPU, else CPU) or one rank of a torchrun DDP job.

Under ``torchrun`` every rank draws its own minibatches (the labelers' from the same in-memory windows, see
``wamdata.labeling.windows``; a stream's from its share of the epoch), so the effective batch is ``batch_size x
grad_accumulation x world size``; DDP averages the gradients. On CUDA the forward and loss run under bf16
autocast (weights and optimizer state stay fp32).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

# A rank that waits longer than this for the others fails instead of hanging the job.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environment(cls) -> Runtime:
        """This process's place: torchrun's RANK / WORLD_SIZE / LOCAL_RANK when set, else a single process."""
        cuda = torch.cuda.is_available()
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls(torch.device("cuda" if cuda else "cpu"))
        local_rank = int(os.environ["LOCAL_RANK"])
        if cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        return cls(device, dist.get_rank(), dist.get_world_size())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def seed_for_rank(self, seed: int) -> int:
        """A minibatch seed per rank; rank 0 draws what a single process with ``seed`` draws."""
        return seed + 100_003 * self.rank

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to call in the training step: DDP across ranks, the model itself in one process."""
        if self.world_size == 1:
            return model
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def gradient_sync(self, net: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Inside it, a backward pass all-reduces the gradients only if ``sync``: the micro-batches of one
        accumulated step before the last need not (DDP's ``no_sync``)."""
        return contextlib.nullcontext() if sync or not isinstance(net, DistributedDataParallel) else net.no_sync()

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else contextlib.nullcontext()

    def close(self) -> None:
        """Leave the process group (after every rank is done, so rank 0's checkpoint is written first)."""
        if self.world_size > 1 and dist.is_initialized():
            self.barrier()
            dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks in place when running under DDP; a no-op in one process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor
