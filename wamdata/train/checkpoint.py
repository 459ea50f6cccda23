"""Checkpoints of a training run: the model, as a labeler's checkpoint, and the state to resume the run exactly.

    OUT/model.safetensors        the weights and buffers             (what ``label apply`` / ``eval`` load; the
    OUT/config.json              the model's config                   labeler id is a hash of these two)
    OUT/trainer.json             the step, the run it belongs to, the optimizer's hyper-parameters
    OUT/optimizer.safetensors    the optimizer's tensors (AdamW's moments and step counts)
    OUT/rank-NNNNN.safetensors   per rank: torch's CPU (and CUDA) RNG state, the objective's running tensors
    OUT/rank-NNNNN.json          per rank: the batch source's state (a numpy generator's, or a stream's position)
    OUT/log.jsonl                the log, one line per logged step, up to the saved step

Tensors in safetensors, the rest JSON: nothing is pickled, so a checkpoint from anywhere is safe to open. A
save writes a whole new folder beside OUT (every rank its own files; under DDP on several nodes OUT must be on
a file system they all see) and swaps it into place: a run killed while saving leaves the previous checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from wamdata.format.files import replace_folder, write_atomic
from wamdata.train.runtime import Runtime

WEIGHTS, CONFIG = "model.safetensors", "config.json"
TRAINER, OPTIMIZER, LOG = "trainer.json", "optimizer.safetensors", "log.jsonl"
STATE_VERSION = 1


class CheckpointError(ValueError):
    """A training state that cannot be resumed; the message names the file and the reason."""


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def save_model(model: nn.Module, folder: str | Path) -> Path:
    """``model.safetensors`` + ``config.json`` (``model.config.to_json()``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # contiguous CPU copies: safetensors refuses views, and the weights must not alias the live model's.
    write_atomic(folder / WEIGHTS, save({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}))
    write_atomic(folder / CONFIG, (json.dumps(model.config.to_json(), indent=2) + "\n").encode())
    return folder


@dataclass
class RankState:
    """What each rank draws differently: its RNG states, its batch source, its objective's running tensors."""

    rng: dict[str, torch.Tensor]
    batches: dict[str, Any]
    objective: dict[str, torch.Tensor]

    @classmethod
    def capture(cls, batches: Stateful, objective: Stateful, device: torch.device) -> RankState:
        rng = {"torch_cpu": torch.get_rng_state()}
        if device.type == "cuda":
            rng["torch_cuda"] = torch.cuda.get_rng_state(device)
        return cls(rng, batches.state_dict(), objective.state_dict())

    def restore(self, batches: Stateful, objective: Stateful, device: torch.device) -> None:
        torch.set_rng_state(self.rng["torch_cpu"])
        if device.type == "cuda":
            torch.cuda.set_rng_state(self.rng["torch_cuda"], device)
        batches.load_state_dict(self.batches)
        objective.load_state_dict(self.objective)


@dataclass
class TrainingState:
    step: int
    seconds: float                     # training time before this state was saved, over every earlier run
    log: list[dict[str, float]]
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rank: RankState


def staging_folder(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.saving")


def rank_files(folder: Path, rank: int) -> tuple[Path, Path]:
    return folder / f"rank-{rank:05d}.safetensors", folder / f"rank-{rank:05d}.json"


def save_training(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, seconds: float,
                  run: Mapping[str, Any], log: list[dict[str, float]], rank: RankState, runtime: Runtime) -> None:
    """Every rank calls this at the same step: the checkpoint of the run at ``step`` replaces ``folder``."""
    staging = staging_folder(folder)
    if runtime.is_main:
        shutil.rmtree(staging, ignore_errors=True)  # a save killed before its swap
        staging.mkdir(parents=True)
    runtime.barrier()
    tensors, json_path = rank_files(staging, runtime.rank)
    write_atomic(tensors, save({**{f"rng.{k}": v for k, v in rank.rng.items()},
                                **{f"objective.{k}": v.detach().cpu() for k, v in rank.objective.items()}}))
    write_atomic(json_path, json.dumps({"batches": rank.batches}).encode())
    runtime.barrier()
    if not runtime.is_main:
        return
    save_model(model, staging)
    optimizer_tensors, optimizer_json = split_optimizer_state(optimizer.state_dict())
    write_atomic(staging / OPTIMIZER, save(optimizer_tensors))
    write_atomic(staging / LOG, "".join(json.dumps(entry) + "\n" for entry in log).encode())
    # Written last: a staging folder holding it is complete (see recover_interrupted_swap).
    write_atomic(staging / TRAINER, (json.dumps({"version": STATE_VERSION, "step": step, "seconds": seconds,
                                                 "run": run, "optimizer": optimizer_json}, indent=2) + "\n").encode())
    replace_folder(folder, staging)


def load_training(folder: Path, run: Mapping[str, Any], runtime: Runtime) -> TrainingState | None:
    """The state saved in ``folder`` by this same run, or None where there is none yet; every rank calls it.

    A state saved by a run with other options (``run`` differs), or a folder holding something else, is
    refused with a CheckpointError naming the file."""
    if runtime.is_main:
        recover_interrupted_swap(folder)
    runtime.barrier()
    path = folder / TRAINER
    if not path.is_file():
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise CheckpointError(f"{folder}: {'holds files but' if folder.is_dir() else 'is a file, with'} no "
                                  f"{TRAINER}, so no training state to resume; give another output folder")
        return None
    with reading(path):
        saved = json.loads(path.read_text())
        if saved.get("version") != STATE_VERSION:
            raise ValueError(f"state version {saved.get('version')!r}, this wamdata reads {STATE_VERSION}")
        differences = differing(saved["run"], json.loads(json.dumps(run)))
    if differences:
        raise CheckpointError(f"{path}: saved by a run with other options ({'; '.join(differences)}); resume with "
                              "the same options, or give another output folder (or remove this one) to start over")
    with reading(folder / WEIGHTS):
        model = load((folder / WEIGHTS).read_bytes())
    with reading(folder / OPTIMIZER):
        optimizer = join_optimizer_state(load((folder / OPTIMIZER).read_bytes()), saved["optimizer"])
    with reading(folder / LOG):
        log = [json.loads(line) for line in (folder / LOG).read_text().splitlines()]
    tensors_path, json_path = rank_files(folder, runtime.rank)
    with reading(tensors_path):
        tensors = load(tensors_path.read_bytes())
    with reading(json_path):
        batches = json.loads(json_path.read_text())["batches"]
    rank = RankState({k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}, batches,
                     {k.removeprefix("objective."): v for k, v in tensors.items() if k.startswith("objective.")})
    return TrainingState(int(saved["step"]), float(saved["seconds"]), log, model, optimizer, rank)


def recover_interrupted_swap(folder: Path) -> None:
    """A kill between the two renames of ``replace_folder`` leaves no ``folder`` and the new, complete
    checkpoint beside it: put it in place (a staging folder without trainer.json is an unfinished save)."""
    staging = staging_folder(folder)
    if not folder.exists() and (staging / TRAINER).is_file():
        os.replace(staging, folder)


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    try:
        yield
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
        raise CheckpointError(f"{path}: cannot resume from it: {type(e).__name__}: {e}") from None


def differing(saved: Any, now: Any, where: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON documents, with both values."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [d for key in sorted(saved.keys() | now.keys(), key=str)
                for d in differing(saved.get(key), now.get(key), f"{where}.{key}" if where else str(key))]
    return [] if saved == now else [f"{where or 'run'}: saved {saved!r}, now {now!r}"]


def split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` -> (its tensors, keyed ``<parameter index>.<name>``; the rest, as JSON)."""
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``split_optimizer_state``. The parameter indices must be ints again: the optimizer
    matches its state to its parameters by them, and passes over any other key without a word."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in rest["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": rest["param_groups"]}
