"""Checkpoints: ``model.safetensors`` (weights and buffers) + ``config.json`` (the model's config).

Loading reads tensors and JSON only, never pickles, so a checkpoint from anywhere is safe to open. The
labeler id that names a model's label side-cars is a hash of both files: same weights and config, same id.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from wamdata.labeling.config import IDMConfig, LAMConfig
from wamdata.labeling.idm import InverseDynamicsModel
from wamdata.labeling.lam import LatentActionModel

WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_checkpoint(model: LatentActionModel | InverseDynamicsModel, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # contiguous copies: safetensors refuses views, and the weights must not alias the live model's.
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, folder / WEIGHTS)
    (folder / CONFIG).write_text(json.dumps(model.config.to_json(), indent=2) + "\n")
    return folder


def load_checkpoint(folder: str | Path) -> LatentActionModel | InverseDynamicsModel:
    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    kind = config.pop("model")
    model: nn.Module
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
