"""The CTC task: CTC loss (blank = last id), greedy decoding as sherpa-onnx does it, WER and CER.

A CTC model returns ``{"log_probs": (B, T', V), "logit_lengths": (B,)}``; the built-in one is ``quartznet``
(:mod:`compressor.families.ctc.quartznet`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compressor.core.registry import Args
from compressor.core.task import Task, to_device
from compressor.families.asr.greedy import ctc_greedy


class CTCTask(Task):
    """CTC loss (blank = last id), greedy decoding, WER/CER."""

    name = "ctc"
    main_metric = "wer"
    metric_mode = "min"

    class Args(Args):
        zero_infinity: bool = True

    @property
    def blank_id(self) -> int:
        if "blank_id" in self.info:
            return int(self.info["blank_id"])
        return int(self.info.get("vocab_size", 0)) - 1

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        log_probs = outputs["log_probs"].float()
        return F.ctc_loss(log_probs.transpose(0, 1), batch["tokens"], outputs["logit_lengths"],
                          batch["token_lengths"], blank=self.blank_id, reduction="mean",
                          zero_infinity=self.args.zero_infinity)

    def decode(self, outputs: dict[str, torch.Tensor]) -> list[list[int]]:
        return ctc_greedy(outputs["log_probs"], outputs["logit_lengths"], self.blank_id)

    def batch_error(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> float:
        hyps = self.decode(outputs)
        refs = [row[: int(n)].tolist() for row, n in zip(batch["tokens"].cpu(), batch["token_lengths"].cpu())]
        return sum(h != r for h, r in zip(hyps, refs)) / max(1, len(refs))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device
                 ) -> dict[str, float]:
        from compressor.families.asr.metrics import ErrorCounter, detokenize

        tokens = self.info.get("tokens")
        counter = ErrorCounter()
        loss_sum, count = 0.0, 0
        for batch in batches:
            batch = to_device(batch, device)
            out = self.forward(model, batch)
            n = int(batch["feature_lengths"].shape[0])
            loss_sum += float(self.loss(out, batch)) * n
            count += n
            refs = batch.get("text") or [
                detokenize(row[: int(k)].tolist(), tokens, self.blank_id)
                for row, k in zip(batch["tokens"].cpu(), batch["token_lengths"].cpu())]
            for ids, ref in zip(self.decode(out), refs):
                counter.add(detokenize(ids, tokens, self.blank_id), ref)
        return {"loss": loss_sum / max(1, count), "wer": counter.wer, "cer": counter.cer}
