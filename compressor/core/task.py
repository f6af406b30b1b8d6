"""Tasks: forward, base loss, decoding and metrics for a model family.

Models in compressor take the collated batch (a dict of tensors) and return a dict of tensors, so a text
teacher (reading ``batch["text_ids"]``) and a speech student (reading ``batch["features"]``) train on the same
batches. A task turns those outputs into a loss and metrics; strategy plugins work across tasks because they
only see batches, outputs and loss terms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from compressor.core.registry import Args, NoArgs


class Task:
    """Base class. Subclasses set ``main_metric``/``metric_mode`` and implement :meth:`loss`."""

    name: ClassVar[str] = ""
    Args: ClassVar[type[Args]] = NoArgs
    main_metric: ClassVar[str] = "loss"
    metric_mode: ClassVar[str] = "min"  # "min" or "max": which direction of main_metric is better
    #: metrics that restate another (``error_rate`` = 1 - ``accuracy``): kept in metrics.jsonl and the final
    #: tables for the specs and scripts that read them, left out of progress lines
    restated_metrics: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, args: Args, info: dict[str, Any] | None = None) -> None:
        self.args = args
        self.info = info or {}

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return model(batch)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def batch_error(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> float | None:
        """Fraction of the batch the model gets wrong (drives the error-rate KD-weight schedule)."""
        return None

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device
                 ) -> dict[str, float]:
        """Metrics over a split. The default averages the loss; tasks add accuracy, WER, ..."""
        total, count = 0.0, 0
        for batch in batches:
            batch = to_device(batch, device)
            out = self.forward(model, batch)
            n = batch_size(batch)
            total += float(self.loss(out, batch)) * n
            count += n
        return {"loss": total / max(1, count)}


def batch_size(batch: dict[str, Any]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
        if isinstance(value, list):
            return len(value)
    return 1


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
