"""Learning-rate schedule: linear warm-up, then cosine decay to zero, stepped per batch."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at optimiser step `step`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def warmup_cosine_schedule(optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    # A LambdaLR rather than SequentialLR(LinearLR, CosineAnnealingLR): SequentialLR cannot take
    # a zero-length warm-up and its chained steps are hard to resume exactly.
    warmup_steps = max(0, min(int(warmup_steps), int(total_steps) - 1))
    return LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, int(total_steps)))
