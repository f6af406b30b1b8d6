"""Learning-rate schedules: linear warmup, then constant, cosine, linear or exponential decay."""

from __future__ import annotations

import math

import torch

from compressor.spec import LRScheduleSpec


class LRFactor:
    """Multiplier of the base learning rate at a given optimizer step (a picklable LambdaLR function)."""

    def __init__(self, spec: LRScheduleSpec, base_lr: float, total_steps: int) -> None:
        self.name = spec.name
        self.warmup = spec.warmup_steps
        self.floor = min(1.0, spec.min_lr / base_lr) if base_lr > 0 else 0.0
        self.total = max(1, total_steps)
        self.decay_start = spec.decay_start

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        if self.name == "constant":
            return 1.0
        start = max(self.warmup, int(self.decay_start * self.total))
        if step < start:
            return 1.0
        frac = min(1.0, (step - start) / max(1, self.total - start))
        if self.name == "cosine":
            return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
        if self.name == "linear":
            return 1.0 + (self.floor - 1.0) * frac
        # exponential: from 1 down to the floor (min_lr / lr) at the end of the stage
        return math.exp(math.log(max(self.floor, 1e-12)) * frac) if self.floor < 1.0 else 1.0


def build_optimizer(params: list[torch.nn.Parameter], spec) -> torch.optim.Optimizer:
    if spec.name == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)
    return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: LRScheduleSpec, base_lr: float, total_steps: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRFactor(spec, base_lr, total_steps))
