"""The vector quantizer of the latent action model: nearest-code quantization of the encoder's output, with an
EMA-updated codebook (VQ-VAE-2), a commitment loss, k-means initialization and dead-code restart."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wamdata.train.runtime import all_reduce_sum


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

        ``quantize=False`` passes z_e through (the warm-up, see ``LamObjective``) and still reports the nearest codes.
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
