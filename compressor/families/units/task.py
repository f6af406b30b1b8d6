"""Masked-unit prediction (MLM over discrete speech units), the pre-training objective of vq-wav2vec BERT.

For the units ``c`` (B, T) a model reads (``tokenize_batch`` puts them into the batch), spans are masked as
in vq-wav2vec BERT and SpanBERT: every real unit starts a span with probability ``prob`` and the ``span``
units from each start are replaced by [MASK]; the loss is the cross-entropy of the original units at the
masked positions::

    L_MLM = - mean_{t in masked} log p(c_t | c with the spans masked)

Training masks are drawn from torch's global generator (a resumed run repeats them); evaluation masks from a
fixed seed, so the validation loss and masked-unit accuracy are comparable from epoch to epoch. The model
declares ``tokenize_batch``, ``mask_token_id``, ``special_token_ids`` and returns ``mlm_logits`` at the
positions of ``batch["mlm_mask"]`` (``vq_bert``, ``vq_bert_ds2``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressor.core.registry import Args
from compressor.core.sequences import span_mask, unwrap
from compressor.core.task import Task, to_device

EVAL_MASK_SEED = 1234


def masked_unit_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the masked units (0 when nothing was masked, with the graph kept)."""
    if targets.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), targets)


class MaskedUnits(Task):
    """Masked-unit prediction: cross-entropy of masked discrete speech units; metric masked-unit accuracy."""

    name = "masked_units"
    main_metric = "unit_accuracy"
    metric_mode = "max"

    class Args(Args):
        prob: float = Field(default=0.05, gt=0, le=1, description="probability a unit starts a masked span "
                            "(vq-wav2vec BERT: 0.05)")
        span: int = Field(default=10, ge=1, description="units per masked span (vq-wav2vec BERT: 10)")

    def _mask(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        m = unwrap(model)
        batch = dict(batch)
        batch.pop("units", None)
        batch.pop("unit_lengths", None)
        m.tokenize_batch(batch)
        units, lengths = batch["units"], batch["unit_lengths"]
        if m.training:
            mask = span_mask(units.shape[0], units.shape[1], self.args.prob, self.args.span, lengths)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(EVAL_MASK_SEED)
                mask = span_mask(units.shape[0], units.shape[1], self.args.prob, self.args.span, lengths)
        mask = mask.to(units.device)
        batch["mlm_targets"] = units[mask]
        batch["units"] = units.masked_fill(mask, int(m.mask_token_id))
        batch["mlm_mask"] = mask
        return batch

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A unit model reads its units with spans masked; any other model (a text teacher beside it in
        PT-KD) reads the batch as it is."""
        if not hasattr(unwrap(model), "unit_vocab_size"):
            return model(batch)
        masked = self._mask(model, batch)
        out = dict(model(masked))
        out["mlm_targets"] = masked["mlm_targets"]
        return out

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        return masked_unit_loss(outputs["mlm_logits"], outputs["mlm_targets"])

    def batch_error(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> float:
        targets = outputs["mlm_targets"]
        return float((outputs["mlm_logits"].argmax(-1) != targets).float().mean()) if targets.numel() else 0.0

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device
                 ) -> dict[str, float]:
        loss_sum, correct, count = 0.0, 0, 0
        for batch in batches:
            batch = to_device(batch, device)
            out = self.forward(model, batch)
            targets = out["mlm_targets"]
            n = int(targets.numel())
            if n:
                loss_sum += float(masked_unit_loss(out["mlm_logits"], targets)) * n
                correct += int((out["mlm_logits"].argmax(-1) == targets).sum())
            count += n
        return {"loss": loss_sum / max(1, count), "unit_accuracy": correct / max(1, count),
                "masked_units": float(count)}
