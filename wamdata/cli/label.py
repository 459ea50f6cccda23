"""``wamdata label train-lam | train-idm | eval | apply``: the action-labeling commands of the CLI."""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wamdata.format.config import ConfigError, with_overrides
from wamdata.labeling.config import IDM_TRAINING, LAM_TRAINING, IDMConfig, LAMConfig, labeler_options
from wamdata.train.config import TrainConfig

if TYPE_CHECKING:  # the commands import torch, Ray and the models when they run, not when the CLI starts
    from wamdata.train.runtime import Runtime

# Options with a flag of their own (the rest are set with --set NAME=VALUE); all are fields of the labeler's
# config or of its TrainConfig.
TRAINING_FLAGS = ("steps", "batch_size", "lr", "seed", "warmup_steps", "grad_accumulation", "log_every",
                  "save_every")
LAM_FLAGS = ("codebook_size", "tokens", "code_dim", "gap_seconds", "image_size", *TRAINING_FLAGS)
IDM_FLAGS = ("chunk", "dropout", "random_shift", "image_size", *TRAINING_FLAGS)
IDM_FROM_DATA = ("action_dim", "embodiment")  # set by --embodiment and the dataset, not by --set


def _options(args: argparse.Namespace, flags: tuple[str, ...]) -> dict[str, Any]:
    """The labeler's options from its flags, then --set (which wins)."""
    given = {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
    return with_overrides(given, args.set or [])


def cmd_train_lam(args: argparse.Namespace) -> int:
    from wamdata.labeling.lam import train_lam
    from wamdata.labeling.windows import lam_windows
    from wamdata.train.checkpoint import CheckpointError
    from wamdata.train.runtime import Runtime

    config, training = labeler_options(LAMConfig(), LAM_TRAINING, _options(args, LAM_FLAGS), "label train-lam")
    runtime = Runtime.from_environment()
    windows, gap = lam_windows(args.dataset, config.gap_seconds, "train", config.image_size, args.holdout_every,
                               sources=args.source, max_windows=args.max_windows, seed=training.seed)
    quiet = args.quiet or not runtime.is_main
    if not quiet:
        print(f"train-lam: {len(windows)} windows (frame t, t+{gap} steps), {training.steps} steps, {_where(runtime)}")
    data = {"sources": args.source, "max_windows": args.max_windows, "holdout_every": args.holdout_every}
    try:
        train_lam(config, training, windows.frames, runtime=runtime, out=Path(args.out), run={"data": data},
                  on_log=None if quiet else log_printer(), verbose=not quiet)
    except CheckpointError as e:
        print(f"wamdata label train-lam: error: {e}", file=sys.stderr)
        return 1
    return _close(args.out, runtime, "train-lam")


def _where(runtime: Runtime) -> str:
    return f"{runtime.device.type}" + (f", {runtime.world_size} DDP ranks" if runtime.world_size > 1 else "")


def _close(out: str, runtime: Runtime, command: str) -> int:
    """All ranks leave together (rank 0 wrote the checkpoint); rank 0 says where it is."""
    if runtime.is_main:
        print(f"{command}: checkpoint {out}")
    runtime.close()
    return 0


def log_printer() -> Callable[[dict[str, float]], None]:
    """A training log callback printing one line per entry: the step, the loss and metrics, the rate, the time."""
    def log(entry: dict[str, float]) -> None:
        metrics = "  ".join(f"{name} {value:.4g}" for name, value in entry.items()
                            if name not in ("step", "lr", "seconds"))
        print(f"step {int(entry['step']):6d}  {metrics}  lr {entry['lr']:.2e}  {entry['seconds']:6.0f} s", flush=True)
    return log


def cmd_train_idm(args: argparse.Namespace) -> int:
    from wamdata.labeling.idm import train_idm
    from wamdata.labeling.windows import load_split
    from wamdata.stream import WindowSpec
    from wamdata.train.checkpoint import CheckpointError
    from wamdata.train.runtime import Runtime

    values = _options(args, IDM_FLAGS)
    fixed = sorted(set(values) & set(IDM_FROM_DATA))
    if fixed:
        raise ConfigError(f"label train-idm: {fixed[0]} is set by --embodiment and the dataset's actions")
    config, training = labeler_options(IDMConfig(action_dim=0, embodiment=args.embodiment), IDM_TRAINING, values,
                                       "label train-idm")
    runtime = Runtime.from_environment()
    windows = load_split(args.dataset, WindowSpec(horizon=config.chunk, action_horizon=config.chunk), "train",
                         config.image_size, args.holdout_every, with_actions=True, max_windows=args.max_windows,
                         seed=training.seed)
    windows = windows.select(windows.embodiments == args.embodiment)
    if not len(windows):
        raise ConfigError(f"label train-idm: no train windows with actions for embodiment {args.embodiment!r}")
    width = int(windows.action_mask[:, 0].all(axis=0).sum())
    config = replace(config, action_dim=width)
    quiet = args.quiet or not runtime.is_main
    if not quiet:
        print(f"train-idm: {len(windows)} windows of {args.embodiment}, {width} action dims, {training.steps} steps, "
              f"{_where(runtime)}")
    data = {"max_windows": args.max_windows, "holdout_every": args.holdout_every}
    try:
        train_idm(config, training, windows.frames, windows.actions[..., :width], runtime=runtime, out=Path(args.out),
                  run={"data": data}, on_log=None if quiet else log_printer(), verbose=not quiet)
    except CheckpointError as e:
        print(f"wamdata label train-idm: error: {e}", file=sys.stderr)
        return 1
    return _close(args.out, runtime, "train-idm")


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
    from wamdata.labeling.apply import LabelOptions, label_apply
    from wamdata.labeling.checkpoint import LabelingError

    given = {name: getattr(args, name) for name in ("camera", "batch_size", "mc_samples")}
    options = LabelOptions(only_unlabeled=args.only_unlabeled, **{k: v for k, v in given.items() if v is not None})
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


def _add_labeler_options(parser: argparse.ArgumentParser, model: object, training: TrainConfig,
                         flags: tuple[str, ...]) -> None:
    """A flag per name in ``flags`` (its type and default from the labeler's defaults), and --set for any field."""
    defaults = {**asdict(model), **asdict(training)}
    types = {**typing.get_type_hints(type(model)), **typing.get_type_hints(TrainConfig)}
    for name in flags:
        parser.add_argument(f"--{name.replace('_', '-')}", type=types[name], help=f"default {defaults[name]}")
    names = ", ".join(sorted(name for name in defaults if name not in IDM_FROM_DATA))
    parser.add_argument("--set", action="append", metavar="NAME=VALUE",
                        help=f"any option, the value read as YAML (repeat for several): {names}")


def _add_holdout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--holdout-every", type=int, help="ignore the dataset's splits and hold out every Nth episode "
                        "(by sorted id) for datasets without a val split; pass the same N to train and eval")


def add_parser(sub: argparse._SubParsersAction) -> None:
    label = sub.add_parser("label", help="latent action and inverse dynamics models: train, evaluate, label")
    commands = label.add_subparsers(dest="label_command", required=True)
    lam = commands.add_parser("train-lam", help="train a VQ latent action model on every video of the train split")
    lam.add_argument("dataset", nargs="+", help="dataset folders or URLs (one fps)")
    lam.add_argument("--out", required=True, help="checkpoint folder (model.safetensors + config.json, and the "
                     "training state: the same command run again resumes from it)")
    lam.add_argument("--max-windows", type=int, help="train on at most this many windows")
    lam.add_argument("--source", action="append", help="train on this source only; repeat for several (default: all)")
    _add_holdout(lam)
    _add_labeler_options(lam, LAMConfig(), LAM_TRAINING, LAM_FLAGS)
    lam.set_defaults(func=cmd_train_lam)
    idm = commands.add_parser("train-idm", help="train an inverse dynamics model on one embodiment's train episodes")
    idm.add_argument("dataset", nargs="+")
    idm.add_argument("--embodiment", required=True)
    idm.add_argument("--out", required=True, help="checkpoint folder, as for train-lam")
    idm.add_argument("--max-windows", type=int)
    _add_holdout(idm)
    _add_labeler_options(idm, IDMConfig(action_dim=0, embodiment=""), IDM_TRAINING, IDM_FLAGS)
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
