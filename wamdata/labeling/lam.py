"""Latent action model (LAM): a VQ bottleneck between a latent inverse-dynamics encoder and a forward model.

encoder(frame t, frame t+gap) -> z_e (tokens x code_dim) -> quantizer (codebook K, EMA updates,
commitment loss, dead-code restart) -> z_q -> decoder(frame t, z_q) predicts frame t+gap. The decoder
sees frame t, so the only thing the latent must carry is what changed: the action (as in LAPA and Genie).
The gap is set in seconds and turned into steps per source fps, so 10 Hz and 30 Hz video share a meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wamdata.labeling.config import LAMConfig
from wamdata.labeling.vq import VectorQuantizer
from wamdata.train.batches import MemoryBatches
from wamdata.train.config import TrainConfig
from wamdata.train.loop import LogEntry, Objective, StepOutput, train
from wamdata.train.runtime import Runtime


def conv_features(in_channels: int, channels: int, image_size: int) -> nn.Sequential:
    """Stride-2 convolutions down to an 8x8 map, then a 3x3 convolution: ``channels`` features per cell,
    which the caller pools over the image."""
    layers: list[nn.Module] = []
    size, c_in = image_size, in_channels
    while size > 8:
        layers += [nn.Conv2d(c_in, channels, 4, stride=2, padding=1), nn.GroupNorm(8, channels), nn.GELU()]
        c_in, size = channels, size // 2
    return nn.Sequential(*layers, nn.Conv2d(c_in, channels, 3, padding=1), nn.GELU())


def check_image_size(frames: torch.Tensor, size: int) -> None:
    """The labelers take frames at their ``image_size``, resized by the one resize (wamdata.media.frames) on the
    data path, so label apply feeds them exactly the pixels training did; any other size is a mistake."""
    if tuple(frames.shape[-2:]) != (size, size):
        raise ValueError(f"frames of {frames.shape[-1]}x{frames.shape[-2]} px; this model takes {size}x{size}: "
                         "resize them with wamdata.media.frames.resize_frames, as the stream and label apply do")


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
        self.idm_convs = conv_features(3, c, config.image_size)
        self.to_latent = nn.Linear(c, config.tokens * config.code_dim)
        self.quantizer = VectorQuantizer(config.codebook_size, config.code_dim, config.ema_decay,
                                         config.commitment, config.dead_code_after)
        # The decoder works at the full input resolution and conditions multiplicatively (FiLM scale): a shift
        # by v is, to first order, -v . grad(frame), a product of the latent with local features of the
        # frame. Adding the latent as a bias at 8x8 left the decoder unable to use it.
        self.frame_convs = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, c, 3, padding=1),
                                         nn.GELU(), nn.Conv2d(c, c, 3, padding=1))
        self.from_latent = nn.Linear(config.tokens * config.code_dim, c)
        self.up = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, 3, 1))

    def encode(self, frame: torch.Tensor, next_frame: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, image_size, image_size) in [0, 1] -> pre-quantization latents z_e (B, tokens, code_dim)."""
        check_image_size(frame, self.config.image_size)
        x = next_frame - frame
        z = self.to_latent(self.idm_convs(x).mean(dim=(2, 3)))
        return z.view(len(z), self.config.tokens, self.config.code_dim)

    def decode(self, frame: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        """Predict frame t+gap from frame t and the quantized latent, as a residual on frame t."""
        return frame + self.up(self.frame_convs(frame) * self.from_latent(z_q.flatten(1))[:, :, None, None])

    def forward(self, frame: torch.Tensor, next_frame: torch.Tensor, quantize: bool = True) -> LAMOutput:
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


class LamObjective(Objective):
    """The LAM's loss (weighted reconstruction + commitment) on windows {"frames": (B, 2, H, W, 3) uint8}.

    A quantizer from step 0 sees an encoder whose outputs do not yet depend on the motion: its codes collapse
    onto that one point, the decoder learns to ignore them, and the encoder then gets no gradient (measured:
    shuffling the codes left the reconstruction unchanged after 1,500 steps). So for the first
    ``warmup_fraction`` of the steps the encoder and decoder learn with the continuous latent; then the codebook
    starts from k-means of the latents of ``kmeans_windows`` windows, and the quantizer is on."""

    def __init__(self, config: LAMConfig, steps: int, seed: int, device: torch.device,
                 kmeans_windows: int = 4096) -> None:
        self.warmup = int(config.warmup_fraction * steps)
        self.seed, self.device, self.kmeans_windows = seed, device, kmeans_windows
        self.code_counts = torch.zeros(config.codebook_size, device=device)

    def before_step(self, step: int, model: nn.Module, next_batch: Callable[[], Any]) -> None:
        if step != self.warmup + 1 or self.warmup == 0:
            return
        latents, count = [], 0
        with torch.no_grad():
            while count < self.kmeans_windows:
                x = frames_to_tensor(next_batch()["frames"]).to(self.device)
                latents.append(model.encode(x[:, 0], x[:, 1]))
                count += len(x)
        # (under DDP each rank clusters its own sample; rank 0's codebook is broadcast at the next forward)
        model.quantizer.init_codebook(torch.cat(latents), seed=self.seed)

    def loss(self, net: nn.Module, batch: Mapping[str, np.ndarray], step: int) -> StepOutput:
        x = frames_to_tensor(batch["frames"]).to(self.device)
        out = net(x[:, 0], x[:, 1], quantize=step > self.warmup)
        self.code_counts += torch.bincount(out.codes.flatten(), minlength=len(self.code_counts))
        return StepOutput(out.loss, {"reconstruction": out.reconstruction_loss})

    def interval_metrics(self) -> dict[str, float]:
        """The codebook's perplexity (exp of the code entropy) and the fraction of codes used since the last log."""
        counts = self.code_counts
        p = counts[counts > 0] / counts.sum()
        metrics = {"perplexity": float(torch.exp(-(p * p.log()).sum())), "usage": float((counts > 0).float().mean())}
        counts.zero_()
        return metrics

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"code_counts": self.code_counts}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.code_counts.copy_(state["code_counts"])


def train_lam(config: LAMConfig, training: TrainConfig, frames: np.ndarray, *, runtime: Runtime | None = None,
              out: Path | None = None, run: Mapping[str, Any] | None = None,
              on_log: Callable[[LogEntry], None] | None = None, verbose: bool = False) -> LatentActionModel:
    """Train on windows ``frames`` (N, 2, image_size, image_size, 3) uint8 = (frame t, frame t+gap), minibatches
    drawn with replacement, through the training loop (``wamdata.train.loop.train``: ``out`` checkpoints and
    resumes, ``runtime`` says where; default from the environment); returns the model on the CPU."""
    runtime = runtime or Runtime.from_environment()
    batches = MemoryBatches({"frames": frames}, training.batch_size, runtime.seed_for_rank(training.seed))
    objective = LamObjective(config, training.steps, training.seed, runtime.device)
    model = train(lambda: LatentActionModel(config), objective, batches, training, runtime, out=out, run=run,
                  on_log=on_log, verbose=verbose)
    return model.cpu()


@torch.no_grad()
def lam_latents(model: LatentActionModel, frames: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Windows (N, 2, image_size, image_size, 3) uint8 -> (pre-quantization latents (N, tokens, code_dim),
    codes (N, tokens))."""
    model.eval()
    latents, codes = [], []
    for i in range(0, len(frames), batch_size):
        batch = frames_to_tensor(frames[i: i + batch_size])
        z_e = model.encode(batch[:, 0], batch[:, 1])
        latents.append(z_e.numpy())
        codes.append(model.quantizer(z_e)[1].numpy())
    return np.concatenate(latents), np.concatenate(codes)
