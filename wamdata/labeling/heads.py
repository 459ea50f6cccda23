"""What a labeler writes for an episode: a head per model kind says which labels (names, dtypes, shapes), the
model inputs an episode's frames give (``inputs``), the forward pass on a batch of them, and how the outputs
become the episode's labels (the IDM pools its overlapping, dropout-sampled chunks: ``pool_chunks``). See
``wamdata.labeling.apply`` for the labels and the IDM confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from wamdata.format.reader import Dataset
from wamdata.labeling.checkpoint import Labeler
from wamdata.labeling.idm import InverseDynamicsModel
from wamdata.labeling.lam import LatentActionModel
from wamdata.labeling.windows import gap_for_fps
from wamdata.stream.normalize import Normalizer


@dataclass(frozen=True)
class LabelSpec:
    dtype: str
    shape: tuple[int, ...]
    rows: str
    description: str


class LamHead:
    """LAM labels: the latent action of (frame t, frame t + gap) as its code and pre-quantization embedding."""

    def __init__(self, model: LatentActionModel) -> None:
        self.model = model.eval()
        c = model.config
        self.specs = {
            "latent_code": LabelSpec("int32", (c.tokens,), "num_steps - gap", "codebook index per token of the "
                                     "change from frame t to t + gap (gap = max(1, round(gap_seconds * fps)))"),
            "latent_embedding": LabelSpec("float32", (c.tokens, c.code_dim), "num_steps - gap",
                                          "encoder output z_e before quantization"),
        }

    def inputs(self, frames: np.ndarray, fps: float) -> np.ndarray:
        gap = gap_for_fps(self.model.config.gap_seconds, fps)
        return np.stack([frames[:-gap], frames[gap:]], axis=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        z_e = self.model.encode(x[:, 0], x[:, 1])
        return [self.model.quantizer(z_e)[1], z_e]

    def labels(self, outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        codes, z_e = outputs
        return {"latent_code": codes.astype(np.int32), "latent_embedding": z_e.astype(np.float32)}


def pool_chunks(chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalized action chunks (W windows, S samples, k, A), window s predicting steps s .. s+k-1, -> per step
    (W + k - 1 of them) the mean of every prediction of it and the confidence exp(-sqrt(mean_d var_d))."""
    windows, samples, k, width = chunks.shape
    steps = windows + k - 1 if windows else 0
    stacked = np.full((k, samples, steps, width), np.nan, dtype=np.float64)
    for j in range(k):  # chunk position j of window s is step s + j
        stacked[j, :, j: j + windows] = chunks[:, :, j].transpose(1, 0, 2)
    predictions = stacked.reshape(k * samples, steps, width)
    spread = np.sqrt(np.nanvar(predictions, axis=0).mean(axis=-1))
    return np.nanmean(predictions, axis=0), np.exp(-spread).astype(np.float32)


class IdmHead:
    """IDM labels: the ensemble mean of every (overlapping, dropout-sampled) prediction of a step's action in
    raw units, and their agreement as the confidence (module docstring)."""

    def __init__(self, model: InverseDynamicsModel, normalizer: Normalizer, mc_samples: int) -> None:
        self.model = model.eval()
        if mc_samples > 1:  # dropout alone in train mode: any normalization layer keeps its inference behaviour
            for module in model.modules():
                if isinstance(module, nn.Dropout):
                    module.train()
        self.normalizer = normalizer
        self.mc_samples = mc_samples
        c = model.config
        rows = "num_steps - 1"
        self.specs = {
            "pseudo_action": LabelSpec("float32", (c.action_dim,), rows, f"IDM action at step t (frame t -> t + 1) "
                                       f"in the raw units of embodiment {c.embodiment}, mean of every prediction"),
            "pseudo_action_confidence": LabelSpec("float32", (), rows, "exp(-sqrt(mean over dims of the variance "
                                                  "of the step's predictions in normalized units)), in (0, 1]"),
        }

    def inputs(self, frames: np.ndarray, fps: float) -> np.ndarray:
        k = self.model.config.chunk
        if len(frames) <= k:
            return np.zeros((0, k + 1, *frames.shape[1:]), dtype=frames.dtype)
        return np.lib.stride_tricks.sliding_window_view(frames, k + 1, axis=0).transpose(0, 4, 1, 2, 3)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.stack([self.model(x) for _ in range(self.mc_samples)], dim=1)]

    def labels(self, outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        mean, confidence = pool_chunks(outputs[0])
        action = self.normalizer.unnormalize(mean, self.model.config.embodiment, "action")
        return {"pseudo_action": action, "pseudo_action_confidence": confidence}


Head = LamHead | IdmHead


def make_head(model: Labeler, dataset: Dataset, mc_samples: int) -> Head:
    if isinstance(model, LatentActionModel):
        return LamHead(model)
    return IdmHead(model, Normalizer([dataset.info["stats"]], "bounds", ("action",)), mc_samples)


def empty_labels(head: Head) -> dict[str, np.ndarray]:
    """Zero-row labels of an episode too short for one model input."""
    return {name: np.zeros((0, *spec.shape), dtype=spec.dtype) for name, spec in head.specs.items()}
