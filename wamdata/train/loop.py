"""The one training loop: the latent action model and the inverse dynamics model train through it, and so will
a world action model.

What is the same for every model is here, in the order it happens (as nanoGPT's train.py): the model, built
under the run's seed; AdamW; the checkpoint found in the output folder, if any, and everything it holds put
back (weights, optimizer, step, RNG states, the batch source's position); then each step: the learning rate
of the step (a pure function of it), the objective's work before the step, the micro-batches' forward (bf16
autocast on CUDA) and backward (gradients all-reduced by DDP on the last one only), the optimizer step, the
log every ``log_every`` steps, the checkpoint every ``save_every``.

What differs per model is its ``Objective``: the loss of a batch, what the model needs between steps (the
LAM's codebook initialized by k-means when its quantizer starts), and the metrics it pools between logs.

Resuming is exact: a run killed after a checkpoint and started again with the same options continues from
the saved step with the same weights, optimizer moments, random draws and batches, so it logs the losses the
uninterrupted run logs (tests/test_train.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from wamdata.train.checkpoint import CheckpointError, RankState, load_training, rank_files, save_training
from wamdata.train.config import TrainConfig
from wamdata.train.runtime import Runtime

LogEntry = dict[str, float]


class BatchSource(Protocol):
    """Batches to train on: iterating yields them (a stream until its epoch ends, then it is iterated again),
    and the state says where the source stands (``MemoryBatches``, ``wamdata.stream.StreamLoader``)."""

    def __iter__(self) -> Iterator[Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class StepOutput:
    loss: torch.Tensor                                                 # what backward() differentiates
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)    # logged, as means over the micro-batches


class Objective:
    """The model-specific part of a run; subclasses define ``loss`` and whatever else they need."""

    def before_step(self, step: int, model: nn.Module, next_batch: Callable[[], Any]) -> None:
        """Work on the model before optimizer step ``step`` (from 1), with batches drawn from the run's source."""

    def loss(self, net: nn.Module, batch: Any, step: int) -> StepOutput:
        raise NotImplementedError

    def interval_metrics(self) -> dict[str, float]:
        """Metrics pooled over the steps since the last log; the call starts a new interval."""
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Running tensors (such as what ``interval_metrics`` pools) that a resumed run must carry on."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Take back what ``state_dict`` returned."""


def learning_rate(step: int, config: TrainConfig) -> float:
    """The rate of optimizer step ``step`` (from 1): a linear warm-up to ``lr`` over ``warmup_steps``, then
    constant, or a cosine decay reaching ``min_lr_fraction * lr`` at the last step."""
    if step <= config.warmup_steps:
        return config.lr * step / config.warmup_steps
    if config.decay == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.lr * config.min_lr_fraction
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def train(build_model: Callable[[], nn.Module], objective: Objective, batches: BatchSource, config: TrainConfig,
          runtime: Runtime, out: Path | None = None, run: Mapping[str, Any] | None = None,
          on_log: Callable[[LogEntry], None] | None = None, verbose: bool = False) -> nn.Module:
    """Train the model ``build_model()`` makes (it must have a ``config`` with ``to_json()``) for
    ``config.steps`` optimizer steps; returns it, in eval mode, on the runtime's device.

    With ``out``, checkpoints go there (wamdata.train.checkpoint) and a checkpoint already there is resumed,
    if it was saved by the same run: the same model config, training options (but for log_every and
    save_every), world size and ``run`` (what the caller adds, such as the data options); else CheckpointError.
    ``on_log`` gets rank 0's log entries; ``verbose`` prints what the run resumes from and where it saves."""
    def say(message: str) -> None:
        if verbose and runtime.is_main:
            print(message, flush=True)

    # The same initial weights on every rank (DDP would broadcast rank 0's anyway); then what training draws
    # (dropout masks, augmentations, code restarts) differs per rank, as the batches do, from a seed other than
    # the initialization's, so that those draws do not repeat its random numbers.
    torch.manual_seed(config.seed)
    model = build_model().to(runtime.device)
    torch.manual_seed(runtime.seed_for_rank(config.seed) + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                                  weight_decay=config.weight_decay)
    identity = {"model": model.config.to_json(), "training": config.identity(), "world_size": runtime.world_size,
                **(run or {})}

    step, seconds_before, log = 0, 0.0, []
    state = load_training(out, identity, runtime) if out is not None else None
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        try:
            state.rank.restore(batches, objective, runtime.device)
        except ValueError as e:
            raise CheckpointError(f"{rank_files(out, runtime.rank)[1]}: {e}") from None
        step, seconds_before, log = state.step, state.seconds, state.log
        say(f"{out}: already trained ({step} steps)" if step >= config.steps else
            f"{out}: resuming from step {step} of {config.steps}")
    net = runtime.wrap(model)
    source = endless(batches)
    started = time.perf_counter() - seconds_before
    model.train()
    while step < config.steps:
        step += 1
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        objective.before_step(step, model, lambda: next(source))
        loss, metrics = torch.zeros((), device=runtime.device), {}
        for micro in range(config.grad_accumulation):
            last = micro == config.grad_accumulation - 1
            with runtime.gradient_sync(net, sync=last):
                with runtime.autocast():
                    output = objective.loss(net, next(source), step)
                (output.loss / config.grad_accumulation).backward()
            loss += output.loss.detach() / config.grad_accumulation
            for name, value in output.metrics.items():
                metrics[name] = metrics.get(name, 0) + value.detach().float() / config.grad_accumulation
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        if step % config.log_every == 0 or step == config.steps:
            entry = {"step": step, "loss": float(loss), **{k: float(v) for k, v in metrics.items()},
                     **objective.interval_metrics(), "lr": lr, "seconds": round(time.perf_counter() - started, 3)}
            log.append(entry)
            if on_log is not None and runtime.is_main:
                on_log(entry)
        if out is not None and (step == config.steps or (config.save_every and step % config.save_every == 0)):
            save_training(out, model, optimizer, step, time.perf_counter() - started, identity, log,
                          RankState.capture(batches, objective, runtime.device), runtime)
            say(f"{out}: checkpoint at step {step}")
    return model.eval()


def endless(batches: Iterable[Any]) -> Iterator[Any]:
    """The source's batches, iterated again each time it ends (a stream's next epoch)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("the batch source yielded no batch")
