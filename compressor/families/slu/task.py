"""Utterance classification (intents of spoken commands, keyword spotting): cross-entropy and accuracy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressor.core.registry import Args
from compressor.core.task import Task, to_device


class Classification(Task):
    """Models return ``{"logits": (B, C)}``; the batch holds integer ``label``s."""

    name = "classification"
    main_metric = "accuracy"
    restated_metrics = frozenset({"error_rate"})  # 1 - accuracy
    metric_mode = "max"

    class Args(Args):
        label_key: str = "label"
        label_smoothing: float = Field(default=0.0, ge=0, lt=1)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        return F.cross_entropy(outputs["logits"].float(), batch[self.args.label_key],
                               label_smoothing=self.args.label_smoothing)

    def batch_error(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> float:
        pred = outputs["logits"].argmax(-1)
        return float((pred != batch[self.args.label_key]).float().mean())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device
                 ) -> dict[str, float]:
        loss_sum, correct, count = 0.0, 0, 0
        for batch in batches:
            batch = to_device(batch, device)
            out = self.forward(model, batch)
            labels = batch[self.args.label_key]
            loss_sum += float(F.cross_entropy(out["logits"].float(), labels, reduction="sum"))
            correct += int((out["logits"].argmax(-1) == labels).sum())
            count += int(labels.numel())
        acc = correct / max(1, count)
        return {"loss": loss_sum / max(1, count), "accuracy": acc, "error_rate": 1.0 - acc}
