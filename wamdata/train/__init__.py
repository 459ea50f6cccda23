"""Training: where a trainer runs (one process or a torchrun rank)."""
