"""Named loss terms: the engine minimises sum(weight * value) and logs every term."""

from __future__ import annotations

import torch


class LossTerms:
    """Loss terms of one batch, by name. The task's own loss is the term ``"task"``."""

    def __init__(self) -> None:
        self.values: dict[str, torch.Tensor] = {}
        self.weights: dict[str, float] = {}

    def add(self, name: str, value: torch.Tensor, weight: float = 1.0) -> None:
        """Add a term; adding the same name twice is an error (two plugins would silently collide)."""
        if name in self.values:
            raise ValueError(f"loss term '{name}' added twice")
        self.values[name] = value
        self.weights[name] = float(weight)

    def set_weight(self, name: str, weight: float) -> None:
        if name not in self.values:
            raise KeyError(f"no loss term '{name}' (terms: {', '.join(self.values)})")
        self.weights[name] = float(weight)

    def total(self) -> torch.Tensor:
        terms = [self.weights[n] * v for n, v in self.values.items() if self.weights[n] != 0.0]
        if not terms:  # every weight is zero: keep the graph so backward() still works
            return sum(v * 0.0 for v in self.values.values())
        return torch.stack([t.float() for t in terms]).sum()

    def log_dict(self) -> dict[str, float]:
        out = {f"loss/{n}": float(v.detach()) for n, v in self.values.items()}
        out.update({f"weight/{n}": w for n, w in self.weights.items() if len(self.values) > 1})
        return out
