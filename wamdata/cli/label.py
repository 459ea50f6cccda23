"""``wamdata label train-lam | train-idm | eval | apply``: the action-labeling commands of the CLI."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wamdata.labeling.config import IDMConfig, LAMConfig

if TYPE_CHECKING:  # the commands import torch, Ray and the models when they run, not when the CLI starts
    from wamdata.labeling.idm import InverseDynamicsModel
    from wamdata.labeling.lam import LatentActionModel, TrainLog
    from wamdata.train.runtime import Runtime

# Config fields a user may set from the command line (the rest are the tuned defaults in the dataclasses).
LAM_OPTIONS = ("steps", "batch_size", "lr", "codebook_size", "tokens", "code_dim", "gap_seconds", "image_size",
               "model_size", "seed")
IDM_OPTIONS = ("steps", "batch_size", "lr", "chunk", "dropout", "random_shift", "image_size", "model_size", "seed")


def _overrides(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def cmd_train_lam(args: argparse.Namespace) -> int:
    from wamdata.labeling.lam import train_lam
    from wamdata.labeling.windows import lam_windows
    from wamdata.train.runtime import Runtime

    config = replace(LAMConfig(), **_overrides(args, LAM_OPTIONS))
    runtime = Runtime.from_environment()
    windows, gap = lam_windows(args.dataset, config.gap_seconds, "train", config.image_size, args.holdout_every,
                               sources=args.source, max_windows=args.max_windows, seed=config.seed)
    quiet = args.quiet or not runtime.is_main
    if not quiet:
        print(f"train-lam: {len(windows)} windows (frame t, t+{gap} steps), {config.steps} steps, {_where(runtime)}")
    model = train_lam(config, windows.frames, on_log=None if quiet else lam_log_printer(), runtime=runtime)
    _save_and_close(model, args.out, runtime, "train-lam")
    return 0


def _where(runtime: Runtime) -> str:
    return f"{runtime.device.type}" + (f", {runtime.world_size} DDP ranks" if runtime.world_size > 1 else "")


def _save_and_close(model: LatentActionModel | InverseDynamicsModel, out: str, runtime: Runtime, command: str) -> None:
    """Rank 0 writes the checkpoint (every rank holds the same weights), then all ranks leave together."""
    from wamdata.labeling.checkpoint import save_checkpoint

    if runtime.is_main:
        print(f"{command}: checkpoint {save_checkpoint(model, out)}")
    runtime.close()


def lam_log_printer() -> Callable[[TrainLog], None]:
    """A LAM training log callback printing one line per entry, with seconds since it was made."""
    started = time.perf_counter()

    def log(entry: TrainLog) -> None:
        print(f"step {entry.step:6d}  loss {entry.loss:.5f}  reconstruction {entry.reconstruction:.5f}  "
              f"perplexity {entry.perplexity:5.1f}  usage {entry.usage:.2f}  {time.perf_counter() - started:6.0f} s",
              flush=True)
    return log


def cmd_train_idm(args: argparse.Namespace) -> int:
    from wamdata.labeling.idm import train_idm
    from wamdata.labeling.windows import load_split
    from wamdata.stream import WindowSpec
    from wamdata.train.runtime import Runtime

    base = IDMConfig(action_dim=0, embodiment=args.embodiment)
    config = replace(base, **_overrides(args, IDM_OPTIONS))
    runtime = Runtime.from_environment()
    windows = load_split(args.dataset, WindowSpec(horizon=config.chunk, action_horizon=config.chunk), "train",
                         config.image_size, args.holdout_every, with_actions=True, max_windows=args.max_windows,
                         seed=config.seed)
    windows = windows.select(windows.embodiments == args.embodiment)
    if not len(windows):
        raise ValueError(f"no train windows with actions for embodiment {args.embodiment!r}")
    width = int(windows.action_mask[:, 0].all(axis=0).sum())
    config = replace(config, action_dim=width)
    quiet = args.quiet or not runtime.is_main
    if not quiet:
        print(f"train-idm: {len(windows)} windows of {args.embodiment}, {width} action dims, {config.steps} steps, "
              f"{_where(runtime)}")
    started = time.perf_counter()
    model = train_idm(config, windows.frames, windows.actions[..., :width], runtime=runtime, on_log=None if quiet else (
        lambda step, loss: print(f"step {step:6d}  mse {loss:.5f}  {time.perf_counter() - started:6.0f} s")))
    _save_and_close(model, args.out, runtime, "train-idm")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from wamdata.labeling.checkpoint import load_checkpoint
    from wamdata.labeling.evaluate import evaluate_idm, evaluate_lam, format_quality
    from wamdata.labeling.lam import LatentActionModel

    results = []
    for folder in args.model:
        model = load_checkpoint(folder)
        if isinstance(model, LatentActionModel):
            result = evaluate_lam(model, args.dataset, args.embodiment, args.max_windows, args.holdout_every)
        else:
            result = evaluate_idm(model, args.dataset, args.max_windows, args.holdout_every)
        results.append({"checkpoint": str(folder), **result})
    for result in results:
        print(format_quality(result))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from wamdata.labeling.apply import THROTTLE_ENV, LabelingError, LabelOptions, label_apply

    options = LabelOptions(only_unlabeled=args.only_unlabeled, throttle_seconds=float(os.environ.get(THROTTLE_ENV, 0)),
                           **_overrides(args, ("camera", "batch_size", "mc_samples")))
    try:
        result = label_apply(args.dataset, args.model, options=options, address=args.address,
                             concurrency=args.concurrency, progress=not args.quiet)
    except LabelingError as e:
        print(f"wamdata label apply: error: {e}", file=sys.stderr)
        return 1
    if result.without_camera:
        print(f"label apply: {result.without_camera} episode(s) without camera {args.camera or '(none)'} passed over")
    if result.nothing_to_do:
        print(f"label apply: nothing to do: {result.folder} already holds labels of all {result.selected} "
              "selected episodes")
        return 0
    print(f"label apply: {result.labeler}: {result.labelled} episodes, {result.frames} frames in "
          f"{result.seconds:.1f} s ({result.frames / max(result.seconds, 1e-9):.0f} frames/s); "
          f"{result.tars_written} side-car tars written, {result.tars_done_before} already done -> {result.folder}")
    return 0


def _add_config_options(parser: argparse.ArgumentParser, config_type: type, names: tuple[str, ...]) -> None:
    types = {f.name: f.type for f in fields(config_type)}
    for name in names:
        kind = {"int": int, "float": float}[str(types[name])]
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"default: the {config_type.__name__} value")


def _add_holdout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--holdout-every", type=int, help="ignore the dataset's splits and hold out every Nth episode "
                        "(by sorted id) for datasets without a val split; pass the same N to train and eval")


def add_parser(sub: argparse._SubParsersAction) -> None:
    label = sub.add_parser("label", help="latent action and inverse dynamics models: train, evaluate, label")
    commands = label.add_subparsers(dest="label_command", required=True)
    lam = commands.add_parser("train-lam", help="train a VQ latent action model on every video of the train split")
    lam.add_argument("dataset", nargs="+", help="dataset folders or URLs (one fps)")
    lam.add_argument("--out", required=True, help="checkpoint folder (model.safetensors + config.json)")
    lam.add_argument("--max-windows", type=int, help="train on at most this many windows")
    lam.add_argument("--source", action="append", help="train on this source only; repeat for several (default: all)")
    _add_holdout(lam)
    _add_config_options(lam, LAMConfig, LAM_OPTIONS)
    lam.set_defaults(func=cmd_train_lam)
    idm = commands.add_parser("train-idm", help="train an inverse dynamics model on one embodiment's train episodes")
    idm.add_argument("dataset", nargs="+")
    idm.add_argument("--embodiment", required=True)
    idm.add_argument("--out", required=True)
    idm.add_argument("--max-windows", type=int)
    _add_holdout(idm)
    _add_config_options(idm, IDMConfig, IDM_OPTIONS)
    idm.set_defaults(func=cmd_train_idm)
    check = commands.add_parser("eval", help="held-out probe R2 / IDM R2 against mean-action and frame-diff baselines")
    check.add_argument("dataset", nargs="+")
    check.add_argument("--model", action="append", required=True, help="checkpoint folder; repeat for several")
    check.add_argument("--embodiment", help="the LAM probe's embodiment (default: the only one with actions)")
    check.add_argument("--max-windows", type=int, help="at most this many windows per split")
    check.add_argument("--json", help="also write the results here")
    _add_holdout(check)
    check.set_defaults(func=cmd_eval)
    apply = commands.add_parser("apply", help="pseudo-label a dataset with a LAM or IDM checkpoint on Ray Data, into "
                                "side-cars labels/<labeler-id>/*.tar; resumable, idempotent")
    apply.add_argument("dataset", help="dataset folder (labels are written into it; video is never rewritten)")
    apply.add_argument("--model", required=True, help="checkpoint folder (model.safetensors + config.json)")
    apply.add_argument("--address", help="Ray cluster address (default: start an embedded local Ray)")
    apply.add_argument("--only-unlabeled", action="store_true", help="only episodes without true actions")
    apply.add_argument("--camera", help="camera to label (default: the first camera of each episode)")
    apply.add_argument("--batch-size", type=int, help="model inputs per forward pass (default 256)")
    apply.add_argument("--mc-samples", type=int, help="IDM: dropout samples per window for the confidence (default 4)")
    apply.add_argument("--concurrency", type=int, help="model actors (default: one per GPU, else one per CPU)")
    apply.set_defaults(func=cmd_apply)
