"""Latent action model (LAM): a VQ bottleneck between a latent inverse-dynamics encoder and a forward model.

encoder(frame t, frame t+gap) -> z_e (tokens x code_dim) -> quantizer (codebook K, EMA updates,
commitment loss, dead-code restart) -> z_q -> decoder(frame t, z_q) predicts frame t+gap. The decoder
sees frame t, so the only thing the latent must carry is what changed: the action (as in LAPA and Genie).
The gap is set in seconds and turned into steps per source fps, so 10 Hz and 30 Hz video share a meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LAMConfig:
    image_size: int = 64
    model_size: int = 32           # frames are area-resized to this before the networks (CPU-sized default)
    motion_weight: float = 10.0    # extra loss weight on pixels that change between the two frames
    codebook_size: int = 32
    tokens: int = 1
    code_dim: int = 16
    channels: int = 32
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_code_after: int = 100     # restart a code unused for this many steps
    gap_seconds: float = 0.1
    lr: float = 1e-3
    batch_size: int = 64
    steps: int = 1500
    seed: int = 0

    def to_json(self) -> dict:
        return {"model": "lam", **asdict(self)}


def conv_stack(in_channels: int, channels: int, image_size: int) -> tuple[nn.Sequential, int]:
    """Stride-2 convolutions down to an 8x8 map; returns the stack and its output channels."""
    layers: list[nn.Module] = []
    size, c_in = image_size, in_channels
    while size > 8:
        layers += [nn.Conv2d(c_in, channels, 4, stride=2, padding=1), nn.GroupNorm(8, channels), nn.GELU()]
        c_in, size = channels, size // 2
    return nn.Sequential(*layers), c_in


class VectorQuantizer(nn.Module):
    """Nearest-code quantization with EMA codebook updates (VQ-VAE-2) and dead-code restart."""

    def __init__(self, codebook_size: int, code_dim: int, decay: float, commitment: float, dead_after: int) -> None:
        super().__init__()
        self.decay, self.commitment, self.dead_after = decay, commitment, dead_after
        self.register_buffer("codebook", torch.randn(codebook_size, code_dim))
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("idle_steps", torch.zeros(codebook_size, dtype=torch.long))

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z_e (B, T, D) -> (z_q with straight-through gradient, codes (B, T), commitment loss)."""
        flat = z_e.reshape(-1, z_e.shape[-1]).float()
        codes = torch.cdist(flat, self.codebook).argmin(dim=1)
        z_q = self.codebook[codes].view_as(z_e).to(z_e.dtype)
        if self.training:
            self._update(flat.detach(), codes)
        loss = self.commitment * F.mse_loss(z_e, z_q.detach())
        return z_e + (z_q - z_e).detach(), codes.view(z_e.shape[:-1]), loss

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        one_hot = F.one_hot(codes, self.codebook.shape[0]).type(flat.dtype)
        count = one_hot.sum(0)
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(one_hot.T @ flat, alpha=1 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (total + 1e-5 * len(count)) * total
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))
        self.idle_steps.add_(1).masked_fill_(count > 0, 0)
        dead = (self.idle_steps >= self.dead_after).nonzero().flatten()
        if len(dead):
            # Restart dead codes on encoder outputs of this batch: the known cure for codebook collapse.
            picks = flat[torch.randint(len(flat), (len(dead),), device=flat.device)]
            self.codebook[dead] = picks
            self.ema_sum[dead] = picks
            self.ema_count[dead] = 1.0
            self.idle_steps[dead] = 0


@dataclass
class LAMOutput:
    prediction: torch.Tensor
    codes: torch.Tensor
    z_e: torch.Tensor
    reconstruction_loss: torch.Tensor
    commitment_loss: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        return self.reconstruction_loss + self.commitment_loss


class LatentActionModel(nn.Module):
    def __init__(self, config: LAMConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        # The latent IDM sees both frames and their difference: motion is the signal, appearance the noise.
        self.idm_convs, out_c = conv_stack(9, c, config.model_size)
        self.to_latent = nn.Linear(out_c * 64, config.tokens * config.code_dim)
        self.quantizer = VectorQuantizer(config.codebook_size, config.code_dim, config.ema_decay,
                                         config.commitment, config.dead_code_after)
        self.frame_convs, _ = conv_stack(3, c, config.model_size)
        self.from_latent = nn.Linear(config.tokens * config.code_dim, c)
        self.mix = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), nn.GELU())
        up: list[nn.Module] = []
        size = 8
        while size < config.model_size:
            up += [nn.ConvTranspose2d(c, c, 4, stride=2, padding=1), nn.GELU()]
            size *= 2
        self.up = nn.Sequential(*up, nn.Conv2d(c, 3, 3, padding=1))

    def encode(self, frame: torch.Tensor, next_frame: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, H, W) in [0, 1] -> pre-quantization latents z_e (B, tokens, code_dim)."""
        x = torch.cat([frame, next_frame, next_frame - frame], dim=1)
        z = self.to_latent(self.idm_convs(x).flatten(1))
        return z.view(len(z), self.config.tokens, self.config.code_dim)

    def decode(self, frame: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        """Predict frame t+gap from frame t and the quantized latent, as a residual on frame t."""
        h = self.frame_convs(frame)
        latent = self.from_latent(z_q.flatten(1))[:, :, None, None].expand(-1, -1, *h.shape[2:])
        return frame + self.up(self.mix(torch.cat([h, latent], dim=1)))

    def resize(self, frames: torch.Tensor) -> torch.Tensor:
        size = self.config.model_size
        return frames if frames.shape[-1] == size else F.interpolate(frames, size=(size, size), mode="area")

    def forward(self, frame: torch.Tensor, next_frame: torch.Tensor) -> LAMOutput:
        frame, next_frame = self.resize(frame), self.resize(next_frame)
        z_e = self.encode(frame, next_frame)
        z_q, codes, commitment = self.quantizer(z_e)
        prediction = self.decode(frame, z_q)
        # Most pixels do not change between frames; weighting the ones that do keeps the small moving agent
        # from being drowned by the static background in the loss.
        changed = (next_frame - frame).abs().amax(dim=1, keepdim=True)
        weight = 1 + self.config.motion_weight * changed / changed.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        reconstruction = (weight * (prediction - next_frame) ** 2).mean()
        return LAMOutput(prediction, codes, z_e, reconstruction, commitment)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1]."""
    return torch.from_numpy(frames).movedim(-1, -3).float().div_(255)


@dataclass
class TrainLog:
    step: int
    loss: float
    reconstruction: float
    perplexity: float
    usage: float


def train_lam(config: LAMConfig, frames: np.ndarray, log_every: int = 100,
              on_log: Callable[[TrainLog], None] | None = None) -> LatentActionModel:
    """Train on windows frames (N, 2, H, W, 3) uint8 = (frame t, frame t+gap); minibatches drawn with
    replacement from memory (see wamdata.train.data for why the windows are in memory)."""
    torch.manual_seed(config.seed)
    model = LatentActionModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.1)
    rng = np.random.default_rng(config.seed)
    counts = torch.zeros(config.codebook_size)
    model.train()
    for step in range(1, config.steps + 1):
        batch = frames_to_tensor(frames[rng.integers(len(frames), size=config.batch_size)])
        out = model(batch[:, 0], batch[:, 1])
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        schedule.step()
        counts += torch.bincount(out.codes.flatten(), minlength=config.codebook_size)
        if on_log is not None and (step % log_every == 0 or step == config.steps):
            p = counts[counts > 0] / counts.sum()
            on_log(TrainLog(step, out.loss.item(), out.reconstruction_loss.item(),
                            float(torch.exp(-(p * p.log()).sum())), float((counts > 0).float().mean())))
            counts.zero_()
    return model.eval()


@torch.no_grad()
def lam_latents(model: LatentActionModel, frames: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Windows (N, 2, H, W, 3) uint8 -> (pre-quantization latents (N, tokens, code_dim), codes (N, tokens))."""
    model.eval()
    latents, codes = [], []
    for i in range(0, len(frames), batch_size):
        batch = frames_to_tensor(frames[i: i + batch_size])
        z_e = model.encode(model.resize(batch[:, 0]), model.resize(batch[:, 1]))
        latents.append(z_e.numpy())
        codes.append(model.quantizer(z_e)[1].numpy())
    return np.concatenate(latents), np.concatenate(codes)
