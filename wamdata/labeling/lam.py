"""Latent action model (LAM): a VQ bottleneck between a latent inverse-dynamics encoder and a forward model.

encoder(frame t, frame t+gap) -> z_e (tokens x code_dim) -> quantizer (codebook K, EMA updates,
commitment loss, dead-code restart) -> z_q -> decoder(frame t, z_q) predicts frame t+gap. The decoder
sees frame t, so the only thing the latent must carry is what changed: the action (as in LAPA and Genie).
The gap is set in seconds and turned into steps per source fps, so 10 Hz and 30 Hz video share a meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wamdata.labeling.config import LAMConfig
from wamdata.train.runtime import Runtime, all_reduce_sum


def conv_features(in_channels: int, channels: int, image_size: int) -> nn.Sequential:
    """Stride-2 convolutions down to an 8x8 map, then a 3x3 convolution: ``channels`` features per cell,
    which the caller pools over the image."""
    layers: list[nn.Module] = []
    size, c_in = image_size, in_channels
    while size > 8:
        layers += [nn.Conv2d(c_in, channels, 4, stride=2, padding=1), nn.GroupNorm(8, channels), nn.GELU()]
        c_in, size = channels, size // 2
    return nn.Sequential(*layers, nn.Conv2d(c_in, channels, 3, padding=1), nn.GELU())


class VectorQuantizer(nn.Module):
    """Nearest-code quantization with EMA codebook updates (VQ-VAE-2) and dead-code restart."""

    def __init__(self, codebook_size: int, code_dim: int, decay: float, commitment: float, dead_after: int) -> None:
        super().__init__()
        self.decay, self.commitment, self.dead_after = decay, commitment, dead_after
        self.register_buffer("codebook", torch.randn(codebook_size, code_dim))
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("idle_steps", torch.zeros(codebook_size, dtype=torch.long))

    def forward(self, z_e: torch.Tensor, quantize: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z_e (B, T, D) -> (z_q with straight-through gradient, codes (B, T), commitment loss).

        ``quantize=False`` passes z_e through (the warm-up, see ``train_lam``) and still reports the nearest codes.
        """
        flat = z_e.reshape(-1, z_e.shape[-1]).float()
        codes = torch.cdist(flat, self.codebook).argmin(dim=1)
        if not quantize:
            return z_e, codes.view(z_e.shape[:-1]), z_e.new_zeros(())
        z_q = self.codebook[codes].view_as(z_e).to(z_e.dtype)
        if self.training:
            self._update(flat.detach(), codes)
        loss = self.commitment * F.mse_loss(z_e, z_q.detach())
        return z_e + (z_q - z_e).detach(), codes.view(z_e.shape[:-1]), loss

    @torch.no_grad()
    def init_codebook(self, z_e: torch.Tensor, iterations: int = 20, seed: int = 0) -> None:
        """K-means on encoder outputs: codes start where the latents are, not at random points
        that every latent is equally far from (which sends all inputs to one code)."""
        flat = z_e.reshape(-1, z_e.shape[-1]).float()
        k = self.codebook.shape[0]
        if len(flat) < k:
            raise ValueError(f"codebook init needs at least {k} latents, got {len(flat)}")
        centres = flat[torch.randperm(len(flat), generator=torch.Generator().manual_seed(seed))[:k]]
        for _ in range(iterations):
            assign = torch.cdist(flat, centres).argmin(dim=1)
            sums = torch.zeros_like(centres).index_add_(0, assign, flat)
            used = torch.bincount(assign, minlength=k) > 0
            means = sums / torch.bincount(assign, minlength=k).clamp_min(1)[:, None]
            centres = torch.where(used[:, None], means, centres)
        self.codebook.copy_(centres)
        self.ema_sum.copy_(centres)
        self.ema_count.fill_(1.0)
        self.idle_steps.zero_()

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        one_hot = F.one_hot(codes, self.codebook.shape[0]).type(flat.dtype)
        # Under DDP the EMA sees every rank's batch, so the codebooks stay equal across ranks.
        count = all_reduce_sum(one_hot.sum(0))
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(all_reduce_sum(one_hot.T @ flat), alpha=1 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (total + 1e-5 * len(count)) * total
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))
        self.idle_steps.add_(1).masked_fill_(count > 0, 0)
        dead = (self.idle_steps >= self.dead_after).nonzero().flatten()
        if len(dead):
            # Restart dead codes on encoder outputs of this batch: the known cure for codebook collapse. (Under
            # DDP the picks differ per rank; DDP broadcasts rank 0's buffers before the next forward.)
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
        # The latent IDM sees only the frame difference, pooled over the image: its output then depends on
        # what moved and not on where things are or how they look, even at initialization. With both frames
        # and a flattened 8x8 map, the decoder learned to ignore the early latents (held-out probe R2 0.02 vs
        # 0.77 with a continuous latent after 800 steps).
        self.idm_convs = conv_features(3, c, config.model_size)
        self.to_latent = nn.Linear(c, config.tokens * config.code_dim)
        self.quantizer = VectorQuantizer(config.codebook_size, config.code_dim, config.ema_decay,
                                         config.commitment, config.dead_code_after)
        # The decoder works at full model resolution and conditions multiplicatively (FiLM scale): a shift
        # by v is, to first order, -v . grad(frame), a product of the latent with local features of the
        # frame. Adding the latent as a bias at 8x8 left the decoder unable to use it.
        self.frame_convs = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, c, 3, padding=1),
                                         nn.GELU(), nn.Conv2d(c, c, 3, padding=1))
        self.from_latent = nn.Linear(config.tokens * config.code_dim, c)
        self.up = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, 3, 1))

    def encode(self, frame: torch.Tensor, next_frame: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, H, W) in [0, 1] -> pre-quantization latents z_e (B, tokens, code_dim)."""
        x = next_frame - frame
        z = self.to_latent(self.idm_convs(x).mean(dim=(2, 3)))
        return z.view(len(z), self.config.tokens, self.config.code_dim)

    def decode(self, frame: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        """Predict frame t+gap from frame t and the quantized latent, as a residual on frame t."""
        return frame + self.up(self.frame_convs(frame) * self.from_latent(z_q.flatten(1))[:, :, None, None])

    def resize(self, frames: torch.Tensor) -> torch.Tensor:
        size = self.config.model_size
        return frames if frames.shape[-1] == size else F.interpolate(frames, size=(size, size), mode="area")

    def forward(self, frame: torch.Tensor, next_frame: torch.Tensor, quantize: bool = True) -> LAMOutput:
        frame, next_frame = self.resize(frame), self.resize(next_frame)
        z_e = self.encode(frame, next_frame)
        z_q, codes, commitment = self.quantizer(z_e, quantize)
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
              on_log: Callable[[TrainLog], None] | None = None, runtime: Runtime | None = None) -> LatentActionModel:
    """Train on windows frames (N, 2, H, W, 3) uint8 = (frame t, frame t+gap); minibatches drawn with
    replacement from memory (see wamdata.train.data for why the windows are in memory). Runs where
    ``runtime`` says (default: from the environment, see wamdata.train.runtime); returns the model on the CPU."""
    runtime = runtime or Runtime.from_environment()
    torch.manual_seed(config.seed)
    model = LatentActionModel(config).to(runtime.device)
    net = runtime.wrap(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    # A constant rate after a short ramp: with OneCycle's decay the encoder had not yet found the motion by the
    # time the rate was small (held-out probe R2 0.02 against 0.77 at 800 steps).
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 50))
    rng = np.random.default_rng(runtime.seed_for_rank(config.seed))
    counts = torch.zeros(config.codebook_size, device=runtime.device)
    # A quantizer from step 0 sees an encoder whose outputs do not yet depend on the motion: its codes collapse
    # onto that one point, the decoder learns to ignore them, and the encoder then gets no gradient (measured:
    # shuffling the codes left the reconstruction unchanged after 1,500 steps). So the encoder and decoder
    # first learn with the continuous latent, then the codebook starts from k-means of those latents.
    warmup = int(config.warmup_fraction * config.steps)
    model.train()
    for step in range(1, config.steps + 1):
        if step == warmup + 1 and warmup > 0:
            # (under DDP each rank clusters its own sample; rank 0's codebook is broadcast at the next forward)
            model.quantizer.init_codebook(_encoder_outputs(model, frames, rng, runtime.device), seed=config.seed)
        batch = frames_to_tensor(frames[rng.integers(len(frames), size=config.batch_size)]).to(runtime.device)
        with runtime.autocast():
            out = net(batch[:, 0], batch[:, 1], quantize=step > warmup)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        schedule.step()
        counts += torch.bincount(out.codes.flatten(), minlength=config.codebook_size)
        if on_log is not None and runtime.is_main and (step % log_every == 0 or step == config.steps):
            p = counts[counts > 0] / counts.sum()
            on_log(TrainLog(step, out.loss.item(), out.reconstruction_loss.item(),
                            float(torch.exp(-(p * p.log()).sum())), float((counts > 0).float().mean())))
            counts.zero_()
    return model.cpu().eval()


@torch.no_grad()
def _encoder_outputs(model: LatentActionModel, frames: np.ndarray, rng: np.random.Generator, device: torch.device,
                     count: int = 4096) -> torch.Tensor:
    batch = frames_to_tensor(frames[rng.choice(len(frames), size=min(count, len(frames)), replace=False)]).to(device)
    return model.encode(model.resize(batch[:, 0]), model.resize(batch[:, 1]))


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
