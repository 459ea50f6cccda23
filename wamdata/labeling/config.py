"""The configurations of the action labelers, apart from the models so the command line reads them without torch.

A checkpoint's config.json is ``to_json()`` of one of these. How a labeler is trained (steps, rate, batch,
seed) is a ``wamdata.train.config.TrainConfig``; each labeler has its tuned defaults below. A user sets the
options of both as one flat mapping (``--steps 400 --set channels=64``, or a YAML mapping): ``labeler_options``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

from wamdata.format.config import ConfigError, typed
from wamdata.train.config import TrainConfig

C = TypeVar("C")


@dataclass(frozen=True)
class LAMConfig:
    image_size: int = 32           # the frames the networks see, resized by wamdata.media.frames (CPU-sized default)
    motion_weight: float = 10.0    # extra loss weight on pixels that change between the two frames
    codebook_size: int = 32
    tokens: int = 1
    code_dim: int = 16
    channels: int = 32
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_code_after: int = 100     # restart a code unused for this many steps
    warmup_fraction: float = 0.5   # first part of training with the quantizer bypassed (see LamObjective)
    gap_seconds: float = 0.1

    def to_json(self) -> dict:
        return {"model": "lam", **asdict(self)}


# A constant rate after a short ramp: with OneCycle's decay the encoder had not yet found the motion by the time
# the rate was small (held-out probe R2 0.02 against 0.77 at 800 steps). Probe R2 0.80 at 2,000 steps, 0.997 at
# 4,000 (README, "Action labels").
LAM_TRAINING = TrainConfig(steps=4000, batch_size=64, lr=2e-3, warmup_steps=50, decay="constant", weight_decay=0.01)


@dataclass(frozen=True)
class IDMConfig:
    action_dim: int
    embodiment: str
    image_size: int = 32           # the frames the network sees, resized by wamdata.media.frames
    chunk: int = 1                 # k: predict a[t : t+k] from frames t .. t+k
    channels: int = 32
    hidden: int = 256
    dropout: float = 0.1           # 0.5 for a few hundred windows (bridge debug: held-out R2 -0.045 vs -0.109)
    # Training augmentation (DrQ): frames shifted by up to this many pixels at image_size. 1 at 32 px is the
    # 2 px at 64 px this model used when it took 64 px frames and halved them itself.
    random_shift: int = 1

    def to_json(self) -> dict:
        return {"model": "idm", **asdict(self)}


# Held-out toy-world R2 0.991 after 400 steps (6 s of training on 2 shared CPU cores).
IDM_TRAINING = TrainConfig(steps=400, batch_size=64, lr=1e-3, warmup_steps=40, decay="cosine", weight_decay=1e-4)


def labeler_options(model: C, training: TrainConfig, values: Mapping[str, Any], where: str) -> tuple[C, TrainConfig]:
    """(model config, training config): the defaults ``model`` and ``training`` with ``values`` set, a flat
    mapping of fields of either; an unknown name or a value of the wrong type is a ConfigError from ``typed``
    naming ``where`` and the key."""
    defaults = (model, training)
    hints = {name: hint for d in defaults for name, hint in typing.get_type_hints(type(d)).items()}
    names = [f.name for d in defaults for f in dataclasses.fields(d)]
    assert len(names) == len(set(names)), "a model config shares a field name with TrainConfig"
    options = dataclasses.make_dataclass(
        "Options", [(f.name, hints[f.name], dataclasses.field(default=getattr(d, f.name)))
                    for d in defaults for f in dataclasses.fields(d)], frozen=True)
    chosen = typed(options, values, where)

    def with_chosen(config: Any) -> Any:
        return replace(config, **{f.name: getattr(chosen, f.name) for f in dataclasses.fields(config)})

    try:
        return with_chosen(model), with_chosen(training)
    except (TypeError, ValueError) as e:  # a value of the right type out of its range (TrainConfig's checks)
        raise ConfigError(f"{where}: {e}") from None
