"""The configurations of the action labelers, apart from the models so the command line reads them without torch.

A checkpoint's config.json is ``to_json()`` of one of these; unset fields take the tuned defaults below.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    warmup_fraction: float = 0.5   # first part of training with the quantizer bypassed (see train_lam)
    gap_seconds: float = 0.1
    lr: float = 2e-3
    batch_size: int = 64
    steps: int = 4000             # probe R2 0.80 at 2,000 steps, 0.995 at 4,000 (README, "Action labels")
    seed: int = 0

    def to_json(self) -> dict:
        return {"model": "lam", **asdict(self)}


@dataclass(frozen=True)
class IDMConfig:
    action_dim: int
    embodiment: str
    image_size: int = 64
    model_size: int = 32
    chunk: int = 1                 # k: predict a[t : t+k] from frames t .. t+k
    channels: int = 32
    hidden: int = 256
    dropout: float = 0.1           # 0.5 for a few hundred windows (bridge debug: held-out R2 -0.075 vs -0.164)
    random_shift: int = 2          # training augmentation: frames shifted by up to this many pixels (DrQ)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    steps: int = 400               # held-out toy-world R2 0.992 after 400 steps (~40 s on 2 CPU cores)
    seed: int = 0

    def to_json(self) -> dict:
        return {"model": "idm", **asdict(self)}
