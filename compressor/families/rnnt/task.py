"""The ``rnnt`` task: RNN-T loss, greedy or beam decoding, WER and CER.

The loss is torchaudio's ``rnnt_loss`` on a GPU and, on a CPU, the same loss computed with PyTorch ops
(:mod:`compressor.families.rnnt.loss`: equal to torchaudio's within float32 rounding, about three times faster there,
where torchaudio's single-threaded kernel took half of a training step); ``loss_impl`` chooses explicitly.

``ctc_weight`` adds an auxiliary CTC loss on the encoder (through the joint network with a zero prediction
vector, so no parameters are added): ``L = L_rnnt + ctc_weight * L_ctc``. Seed 002 trains with the RNN-T loss
alone (``ctc_weight: 0``, the default, and what the specs use). From scratch, a causal LSTM RNN-T first learns
the language model and emits the whole sentence in its first frames; the CTC term pulls the encoder out of
that plateau sooner (measured on ``read_speech``, 4-layer teacher with residual LSTMs: valid WER 11% vs 32%
after 300 steps).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torchaudio.functional import rnnt_loss

from compressor.core.registry import Args
from compressor.core.task import Task, to_device
from compressor.families.asr.metrics import ErrorCounter, detokenize
from compressor.families.rnnt.decoding import beam_search, greedy_search
from compressor.families.rnnt.loss import rnnt_loss_torch


def rnnt_lattice_loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any], blank_id: int,
                      reduction: str = "mean", clamp: float = -1.0, impl: str = "auto") -> torch.Tensor:
    """The RNN-T loss (-log P(y|x), seed 002 Eq. 3) of the lattice in ``outputs``.

    ``impl``: ``torchaudio``, ``torch`` (:func:`compressor.families.rnnt.loss.rnnt_loss_torch`; no ``clamp``) or
    ``auto`` (torch on a CPU without a gradient clamp, torchaudio otherwise).
    """
    logits = outputs["logits"]
    if logits.dtype == torch.bfloat16 and logits.device.type == "cpu":
        logits = logits.float()  # bf16 autocast on a CPU: the lattice's log-probabilities need fp32
    if impl == "auto":
        impl = "torch" if logits.device.type == "cpu" and clamp < 0 else "torchaudio"
    if impl == "torch":
        return rnnt_loss_torch(logits, batch["tokens"], outputs["logit_lengths"], batch["token_lengths"],
                               blank_id, reduction)
    if logits.dtype not in (torch.float32, torch.float16):
        logits = logits.float()
    return rnnt_loss(logits, batch["tokens"].int(), outputs["logit_lengths"].int(),
                     batch["token_lengths"].int(), blank=blank_id, reduction=reduction, clamp=clamp)


def ctc_aux_loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any], blank_id: int,
                 reduction: str = "mean") -> torch.Tensor:
    """CTC loss of the per-frame ``ctc_logits`` (sum over each utterance; mean or sum over the batch).

    Utterances too short for their labels contribute zero (``zero_infinity``).
    """
    log_probs = torch.log_softmax(outputs["ctc_logits"].float(), dim=-1).transpose(0, 1)
    loss = F.ctc_loss(log_probs, batch["tokens"], outputs["logit_lengths"], batch["token_lengths"], blank=blank_id,
                      reduction="sum", zero_infinity=True)
    return loss / log_probs.shape[1] if reduction == "mean" else loss


class RNNTTask(Task):
    """RNN-T speech recognition: loss = rnnt_loss, metrics = WER (main, lower is better), CER, loss."""

    name = "rnnt"
    main_metric = "wer"
    metric_mode = "min"

    class Args(Args):
        decoding: Literal["greedy", "beam"] = "greedy"
        beam_width: int = Field(default=4, ge=1)
        max_symbols_per_frame: int = Field(default=5, ge=1)
        reduction: Literal["mean", "sum"] = Field(
            default="mean", description="of the per-utterance -log P(y|x) over the batch")
        examples: int = Field(default=0, ge=0, description="decoded examples to log with the metrics")
        loss_impl: Literal["auto", "torchaudio", "torch"] = Field(
            default="auto", description="RNN-T loss implementation: auto = PyTorch ops on a CPU (faster there), "
                                        "torchaudio's kernel on a GPU")
        ctc_weight: float = Field(
            default=0.0, ge=0, description="weight of an auxiliary CTC loss on join(enc, 0) (0 = RNN-T loss "
                                           "only, as in seed 002); speeds up alignment learning from scratch")

    def __init__(self, args: Args, info: dict[str, Any] | None = None) -> None:
        super().__init__(args, info)
        self.tokens: list[str] | None = self.info.get("tokens")
        vocab = self.info.get("vocab_size") or (len(self.tokens) if self.tokens else None)
        self.blank_id: int | None = self.info.get("blank_id", None if vocab is None else int(vocab) - 1)
        self.last_examples: list[tuple[str, str]] = []

    def _blank(self, outputs: dict[str, torch.Tensor] | None = None, model: nn.Module | None = None) -> int:
        if self.blank_id is not None:
            return int(self.blank_id)
        if outputs is not None:
            return int(outputs["logits"].shape[-1]) - 1
        return int(model.blank_id)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        loss = rnnt_lattice_loss(outputs, batch, self._blank(outputs), self.args.reduction,
                                 impl=self.args.loss_impl)
        if self.args.ctc_weight > 0 and "ctc_logits" in outputs:
            loss = loss + self.args.ctc_weight * ctc_aux_loss(outputs, batch, self._blank(outputs),
                                                              self.args.reduction)
        return loss

    def decode(self, model: nn.Module, batch: dict[str, Any]) -> list[list[int]]:
        """Token ids (no blanks) for each utterance of the batch."""
        blank = self._blank(model=model)
        if self.args.decoding == "beam":
            return beam_search(model, batch["features"], batch["feature_lengths"], blank,
                               self.args.beam_width, self.args.max_symbols_per_frame)
        return greedy_search(model, batch["features"], batch["feature_lengths"], blank,
                             self.args.max_symbols_per_frame)

    def references(self, batch: dict[str, Any]) -> list[str]:
        blank = self._blank()
        out = []
        for i in range(batch["tokens"].shape[0]):
            n = int(batch["token_lengths"][i])
            out.append(detokenize(batch["tokens"][i, :n].tolist(), self.tokens, blank))
        return out

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device
                 ) -> dict[str, float]:
        was_training = model.training
        model.eval()
        counter = ErrorCounter()
        loss_sum, count = 0.0, 0
        self.last_examples = []
        try:
            for batch in batches:
                batch = to_device(batch, device)
                out = self.forward(model, batch)
                n = int(batch["tokens"].shape[0])
                loss_sum += float(rnnt_lattice_loss(out, batch, self._blank(out), "sum", impl=self.args.loss_impl))
                count += n
                del out
                hyps = self.decode(model, batch)
                blank = self._blank(model=model)
                for hyp, ref in zip(hyps, self.references(batch)):
                    text = detokenize(hyp, self.tokens, blank)
                    counter.add(text, ref)
                    if len(self.last_examples) < self.args.examples:
                        self.last_examples.append((ref, text))
        finally:
            model.train(was_training)
        return {"loss": loss_sum / max(1, count), "wer": counter.wer, "cer": counter.cer}
