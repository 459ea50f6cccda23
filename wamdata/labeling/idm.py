"""Inverse dynamics model (IDM): frames t .. t+k -> the action chunk a[t : t+k], per embodiment.

Trained on the episodes that have actions (VPT, DreamGen), then used to pseudo-label the rest. Actions
are normalized per embodiment with the dataset's q01/q99 stats, so one loss weighs every dimension alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wamdata.labeling.config import IDMConfig
from wamdata.labeling.lam import conv_features, frames_to_tensor
from wamdata.train.runtime import Runtime


class InverseDynamicsModel(nn.Module):
    def __init__(self, config: IDMConfig) -> None:
        super().__init__()
        self.config = config
        frames = config.chunk + 1
        # Each frame and each consecutive difference: the differences carry the motion directly.
        self.convs = conv_features(3 * (2 * frames - 1), config.channels, config.model_size)
        # Max over the image: the moving part is small, and max-pooling finds it wherever it is with few weights.
        # Measured at 400 steps: toy-world R2 0.992 against 0.957 for a flattened 8x8 map (and -0.01 for a
        # mean over the image, which dilutes the small moving agent); on bridge's 153 training windows the
        # flattened map's 130k head weights memorized the train set.
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(config.channels, config.hidden), nn.GELU(),
            nn.Linear(config.hidden, config.chunk * config.action_dim),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, k+1, 3, H, W) in [0, 1] -> normalized actions (B, k, action_dim)."""
        b, n = frames.shape[:2]
        size = self.config.model_size
        x = frames.flatten(0, 1)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="area")
        x = x.view(b, n, 3, size, size)
        x = torch.cat([x, x[:, 1:] - x[:, :-1]], dim=1).flatten(1, 2)
        return self.head(self.convs(x).amax(dim=(2, 3))).view(b, self.config.chunk, self.config.action_dim)


def train_idm(config: IDMConfig, frames: np.ndarray, actions: np.ndarray, log_every: int = 100,
              on_log: Callable[[int, float], None] | None = None,
              runtime: Runtime | None = None) -> InverseDynamicsModel:
    """Train on windows frames (N, k+1, H, W, 3) uint8 and normalized actions (N, k, A), where ``runtime`` says
    (default: from the environment, see wamdata.train.runtime); returns the model on the CPU."""
    runtime = runtime or Runtime.from_environment()
    torch.manual_seed(config.seed)
    model = InverseDynamicsModel(config).to(runtime.device)
    net = runtime.wrap(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.1)
    rng = np.random.default_rng(runtime.seed_for_rank(config.seed))
    target_all = torch.from_numpy(np.ascontiguousarray(actions, dtype=np.float32))
    model.train()
    for step in range(1, config.steps + 1):
        pick = rng.integers(len(frames), size=config.batch_size)
        batch = random_shift(frames_to_tensor(frames[pick]).to(runtime.device), config.random_shift, rng)
        with runtime.autocast():
            loss = F.mse_loss(net(batch).float(), target_all[pick].to(runtime.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if on_log is not None and runtime.is_main and (step % log_every == 0 or step == config.steps):
            on_log(step, loss.item())
    return model.cpu().eval()


def random_shift(frames: torch.Tensor, pad: int, rng: np.random.Generator) -> torch.Tensor:
    """Shift every frame of a batch (B, F, 3, H, W) by one random offset of up to ``pad`` pixels, edges
    replicated (DrQ): the same shift for all frames of a window, so the motion between them is unchanged."""
    if pad == 0:
        return frames
    b, n, c, h, w = frames.shape
    padded = F.pad(frames.flatten(1, 2), (pad,) * 4, mode="replicate")
    i, j = rng.integers(0, 2 * pad + 1, size=2)
    return padded[:, :, i:i + h, j:j + w].view(b, n, c, h, w)


@torch.no_grad()
def idm_predict(model: InverseDynamicsModel, frames: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Windows (N, k+1, H, W, 3) uint8 -> normalized actions (N, k, A)."""
    model.eval()
    return np.concatenate([model(frames_to_tensor(frames[i: i + batch_size])).numpy()
                           for i in range(0, len(frames), batch_size)])
