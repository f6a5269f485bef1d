"""Learning-rate schedules as per-step multipliers of the base lr (for ``LambdaLR``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def lr_multiplier(
    steps_per_epoch: int,
    epochs: int,
    schedule: str = "cosine",
    warmup_epochs: float = 1.0,
    warmup_factor: float = 0.001,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    min_lr_ratio: float = 0.0,
) -> Callable[[int], float]:
    """``step -> factor``: linear warm-up from ``warmup_factor`` to 1 over ``warmup_epochs``,
    then cosine decay to ``min_lr_ratio`` at the last step, or ``gamma`` at each milestone epoch."""
    if schedule not in ("cosine", "multistep"):
        raise ValueError(f"unknown lr schedule {schedule!r}; choose cosine or multistep")
    total = max(1, steps_per_epoch * epochs)
    warmup = min(total, int(round(warmup_epochs * steps_per_epoch)))
    boundaries = sorted(m * steps_per_epoch for m in milestones)

    def factor(step: int) -> float:
        if step < warmup:
            return warmup_factor + (1.0 - warmup_factor) * step / warmup
        if schedule == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return gamma ** sum(step >= b for b in boundaries)

    return factor
