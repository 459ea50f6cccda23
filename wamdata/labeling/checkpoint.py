"""A labeler's checkpoint: the model folder ``wamdata label train-lam / train-idm`` write (``model.safetensors``
+ ``config.json``, see wamdata.train.checkpoint), loaded as a LAM or an IDM, and its identity.

Loading reads tensors and JSON only, never pickles, so a checkpoint from anywhere is safe to open. The
labeler id that names a model's label side-cars is a hash of both files: same weights and config, same id.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file

from wamdata.labeling.config import IDMConfig, LAMConfig
from wamdata.labeling.idm import InverseDynamicsModel
from wamdata.labeling.lam import LatentActionModel
from wamdata.train.checkpoint import CONFIG, WEIGHTS

Labeler = LatentActionModel | InverseDynamicsModel


class LabelingError(ValueError):
    """A checkpoint, option or dataset that cannot be labelled as asked; the message names the file."""


def load_checkpoint(folder: str | Path) -> Labeler:
    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    kind = config.pop("model")
    model: Labeler
    if kind == "lam":
        model = LatentActionModel(LAMConfig(**config))
    elif kind == "idm":
        model = InverseDynamicsModel(IDMConfig(**config))
    else:
        raise ValueError(f"{folder / CONFIG}: unknown model {kind!r}")
    model.load_state_dict(load_file(folder / WEIGHTS))
    return model.eval()


def labeler_id(folder: str | Path) -> str:
    """``<model>-<12 hex of sha256(weights + config)>``: a new checkpoint never reuses old side-cars."""
    folder = Path(folder)
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes() + (folder / CONFIG).read_bytes()).hexdigest()[:12]
    return f"{json.loads((folder / CONFIG).read_text())['model']}-{digest}"


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    labeler: str
    config: dict[str, Any]
    weights_sha256: str
    config_sha256: str


def open_checkpoint(folder: str | os.PathLike) -> tuple[Checkpoint, Labeler]:
    """The checkpoint's identity and its model; any problem is a LabelingError naming the file at fault."""
    folder = Path(folder)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise LabelingError(f"{folder / name}: missing; --model takes a checkpoint folder ({WEIGHTS} + {CONFIG}) "
                                "written by wamdata label train-lam / train-idm")
    try:
        config = json.loads((folder / CONFIG).read_text())
        model = load_checkpoint(folder)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise LabelingError(f"{folder / CONFIG}: not a LAM/IDM config this wamdata reads: {type(e).__name__}: {e}"
                            ) from None
    except (SafetensorError, RuntimeError) as e:
        raise LabelingError(f"{folder / WEIGHTS}: these weights do not load into the model {CONFIG} describes: "
                            f"{e}") from None
    digests = [hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in (WEIGHTS, CONFIG)]
    return Checkpoint(folder, labeler_id(folder), config, *digests), model
