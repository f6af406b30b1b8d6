"""Learning-rate schedules as registered components (kind ``lr_schedule``): linear warmup, then constant,
cosine, linear or exponential decay.

A schedule is a class called with ``(args, base_lr, total_steps)`` whose instances map an optimizer step to
a multiplier of the base learning rate (the function of a ``LambdaLR``; keep it picklable). A third party
registers one with ``registry.add("lr_schedule", "my_lr", MyLR, args=MyLRArgs)``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from pydantic import Field

from compressor.core.registry import Args


class LRScheduleArgs(Args):
    """Warmup, then decay. ``cosine`` and ``linear`` decay to ``min_lr`` at the end of the stage;
    ``exponential`` decays from ``decay_start`` (fraction of the stage) to ``min_lr`` at the end, as in
    seed 002 (ramp up, then exponential decay)."""

    warmup_steps: int = Field(default=0, ge=0, le=10_000_000, description="linear warmup, in optimizer steps")
    warmup_fraction: float = Field(default=0.0, ge=0, lt=1,
                                   description="warmup as a fraction of the stage (seed 003: 0.12); "
                                               "the larger of the two warmups applies")
    min_lr: float = Field(default=0.0, ge=0, allow_inf_nan=False, description="learning rate at the stage's end")
    decay_start: float = Field(default=0.0, ge=0, lt=1, description="fraction of the stage before decay starts")


class LRFactor:
    """Multiplier of the base learning rate at a given optimizer step (a picklable LambdaLR function)."""

    name: ClassVar[str] = "constant"
    Args: ClassVar[type[LRScheduleArgs]] = LRScheduleArgs

    def __init__(self, args: LRScheduleArgs, base_lr: float, total_steps: int) -> None:
        self.total = max(1, total_steps)
        self.warmup = max(args.warmup_steps, int(args.warmup_fraction * self.total))
        self.floor = min(1.0, args.min_lr / base_lr) if base_lr > 0 else 0.0
        self.decay_start = args.decay_start

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        start = max(self.warmup, int(self.decay_start * self.total))
        if step < start:
            return 1.0
        return self.decay(min(1.0, (step - start) / max(1, self.total - start)))

    def decay(self, frac: float) -> float:
        """The multiplier at ``frac`` of the decay phase (0 at its start, 1 at the stage's end)."""
        return 1.0


class ConstantLR(LRFactor):
    """Warmup, then the base learning rate."""

    name = "constant"


class CosineLR(LRFactor):
    """Warmup, then cosine annealing to min_lr."""

    name = "cosine"

    def decay(self, frac: float) -> float:
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * frac))


class LinearLR(LRFactor):
    """Warmup, then linear decay to min_lr."""

    name = "linear"

    def decay(self, frac: float) -> float:
        return 1.0 + (self.floor - 1.0) * frac


class ExponentialLR(LRFactor):
    """Warmup, then exponential decay from decay_start to min_lr (seed 002)."""

    name = "exponential"

    def decay(self, frac: float) -> float:
        return math.exp(math.log(max(self.floor, 1e-12)) * frac) if self.floor < 1.0 else 1.0


class EpochDecayArgs(LRScheduleArgs):
    """``gamma``: the learning rate is divided by gamma at the start of every epoch after the first."""

    gamma: float = Field(default=1.05, ge=1.0, le=10.0, allow_inf_nan=False,
                         description="annealing factor per epoch (seed 000: 1.01, 1.05 or 1.1)")


class EpochDecayLR(LRFactor):
    """Warmup, then lr_e = lr_0 / gamma^e in epoch e (0-based), as in seed 000 Sec. 4.3; floored at min_lr.

    Epoch boundaries are the stage's own (its batches per epoch may differ from epoch to epoch)."""

    name = "epoch_decay"
    Args = EpochDecayArgs
    wants_epoch_steps: ClassVar[bool] = True

    def __init__(self, args: EpochDecayArgs, base_lr: float, total_steps: int,
                 epoch_steps: list[int] | None = None) -> None:
        super().__init__(args, base_lr, total_steps)
        self.gamma = args.gamma
        self.starts = [0]
        for n in epoch_steps or [self.total]:
            self.starts.append(self.starts[-1] + n)

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        epoch = sum(1 for s in self.starts[1:-1] if step >= s)
        return max(self.floor, self.gamma ** -epoch)


BUILTIN_LR_SCHEDULES: list[type[LRFactor]] = [ConstantLR, CosineLR, LinearLR, ExponentialLR, EpochDecayLR]


def build_optimizer(registry: Any, ref: Any, args: Any, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The stage's optimizer: registry entry ``ref.name`` with its validated ``args``."""
    return registry.get("optimizer", ref.name).factory(args, params)


def build_scheduler(registry: Any, ref: Any, args: Any, optimizer: torch.optim.Optimizer, base_lr: float,
                    total_steps: int, epoch_steps: list[int] | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """The stage's LambdaLR; a schedule class with ``wants_epoch_steps = True`` also gets the optimizer steps
    of each epoch (``epoch_steps``)."""
    cls = registry.get("lr_schedule", ref.name).factory
    if getattr(cls, "wants_epoch_steps", False):
        factor = cls(args, base_lr, total_steps, epoch_steps=epoch_steps)
    else:
        factor = cls(args, base_lr, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
