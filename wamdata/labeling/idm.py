"""Inverse dynamics model (IDM): frames t .. t+k -> the action chunk a[t : t+k], per embodiment.

Trained on the episodes that have actions (VPT, DreamGen), then used to pseudo-label the rest. Actions
are normalized per embodiment with the dataset's q01/q99 stats, so one loss weighs every dimension alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wamdata.labeling.config import IDMConfig
from wamdata.labeling.lam import check_image_size, conv_features, frames_to_tensor
from wamdata.train.batches import MemoryBatches
from wamdata.train.config import TrainConfig
from wamdata.train.loop import LogEntry, Objective, StepOutput, train
from wamdata.train.runtime import Runtime


class InverseDynamicsModel(nn.Module):
    def __init__(self, config: IDMConfig) -> None:
        super().__init__()
        self.config = config
        frames = config.chunk + 1
        # Each frame and each consecutive difference: the differences carry the motion directly.
        self.convs = conv_features(3 * (2 * frames - 1), config.channels, config.image_size)
        # Max over the image: the moving part is small, and max-pooling finds it wherever it is with few weights.
        # Measured at 400 steps: toy-world R2 0.992 against 0.957 for a flattened 8x8 map (and -0.01 for a
        # mean over the image, which dilutes the small moving agent); on bridge's 153 training windows the
        # flattened map's 130k head weights memorized the train set.
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(config.channels, config.hidden), nn.GELU(),
            nn.Linear(config.hidden, config.chunk * config.action_dim),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, k+1, 3, image_size, image_size) in [0, 1] -> normalized actions (B, k, action_dim)."""
        check_image_size(frames, self.config.image_size)
        x = torch.cat([frames, frames[:, 1:] - frames[:, :-1]], dim=1).flatten(1, 2)
        return self.head(self.convs(x).amax(dim=(2, 3))).view(len(x), self.config.chunk, self.config.action_dim)


class IdmObjective(Objective):
    """The IDM's loss: MSE to the normalized action chunk, on windows {"frames": (B, k+1, H, W, 3) uint8,
    "actions": (B, k, A) float32}, each window's frames shifted at random (``random_shift``)."""

    def __init__(self, config: IDMConfig, device: torch.device) -> None:
        self.shift, self.device = config.random_shift, device

    def loss(self, net: nn.Module, batch: Mapping[str, np.ndarray], step: int) -> StepOutput:
        frames = random_shift(frames_to_tensor(batch["frames"]).to(self.device), self.shift)
        return StepOutput(F.mse_loss(net(frames).float(), torch.from_numpy(batch["actions"]).to(self.device)))


def train_idm(config: IDMConfig, training: TrainConfig, frames: np.ndarray, actions: np.ndarray, *,
              runtime: Runtime | None = None, out: Path | None = None, run: Mapping[str, Any] | None = None,
              on_log: Callable[[LogEntry], None] | None = None, verbose: bool = False) -> InverseDynamicsModel:
    """Train on windows ``frames`` (N, k+1, image_size, image_size, 3) uint8 and normalized ``actions``
    (N, k, A) through the training loop (``wamdata.train.loop.train``: ``out`` checkpoints and resumes,
    ``runtime`` says where; default from the environment); returns the model on the CPU."""
    runtime = runtime or Runtime.from_environment()
    arrays = {"frames": frames, "actions": np.asarray(actions, dtype=np.float32)}
    batches = MemoryBatches(arrays, training.batch_size, runtime.seed_for_rank(training.seed))
    model = train(lambda: InverseDynamicsModel(config), IdmObjective(config, runtime.device), batches, training,
                  runtime, out=out, run=run, on_log=on_log, verbose=verbose)
    return model.cpu()


def random_shift(frames: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift every frame of a batch (B, F, 3, H, W) by one random offset of up to ``pad`` pixels, edges
    replicated (DrQ): the same shift for all frames of a window, so the motion between them is unchanged.
    The offset is drawn from torch's generator, which a checkpoint saves."""
    if pad == 0:
        return frames
    b, n, c, h, w = frames.shape
    padded = F.pad(frames.flatten(1, 2), (pad,) * 4, mode="replicate")
    i, j = torch.randint(0, 2 * pad + 1, (2,)).tolist()
    return padded[:, :, i:i + h, j:j + w].reshape(b, n, c, h, w)


@torch.no_grad()
def idm_predict(model: InverseDynamicsModel, frames: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Windows (N, k+1, image_size, image_size, 3) uint8 -> normalized actions (N, k, A)."""
    model.eval()
    return np.concatenate([model(frames_to_tensor(frames[i: i + batch_size])).numpy()
                           for i in range(0, len(frames), batch_size)])
