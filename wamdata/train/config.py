"""The options of a training run, apart from the loop so the command line reads them without torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

# Options that change when and what a run reports, not what it computes: a resumed run may change them.
REPORTING = ("log_every", "save_every")


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int = 64                       # windows per micro-batch, per rank
    grad_accumulation: int = 1                 # micro-batches per optimizer step
    lr: float = 1e-3                           # the peak rate, reached at the end of the warm-up
    warmup_steps: int = 0                      # linear ramp from lr / warmup_steps at step 1 to lr
    decay: Literal["constant", "cosine"] = "constant"  # the rate after the warm-up
    min_lr_fraction: float = 0.0               # cosine: the rate at the last step, as a fraction of lr
    weight_decay: float = 0.01                 # AdamW's (decoupled) weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's
    seed: int = 0
    log_every: int = 100
    save_every: int = 500                      # checkpoint every N steps (and at the last); 0: only at the last

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accumulation"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be at least 1, got {self.log_every}")
        for name in ("warmup_steps", "save_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")

    def identity(self) -> dict[str, Any]:
        """The options that decide the trained weights: a checkpoint resumes only a run that agrees on them."""
        return {k: v for k, v in asdict(self).items() if k not in REPORTING}
