"""A small QuartzNet-like CTC model (seed 003) and the CTC task.

``conv_ctc`` is a 1-D time-channel separable convolutional encoder over raw fbank (global CMVN baked in as
buffers, so an exported model takes the features sherpa-onnx computes)::

    ConvCTC
      cmvn_mean, cmvn_std     buffers
      prolog                  SeparableConv(k=prolog_kernel, stride=2) + BN + ReLU   (time subsampling 2)
      blocks.0 .. blocks.{B-1}  QuartzNet blocks: R x (depthwise conv k, pointwise conv, BN, ReLU) + residual
      epilog                  SeparableConv(k=epilog_kernel) + BN + ReLU, then pointwise conv
      head                    Conv1d(1x1) -> vocab logits

Output layout follows NeMo's ``EncDecCTCModel``: ``log_probs`` (B, T', V) with the blank as the LAST id, and
``T' = T // 2`` valid frames (what sherpa-onnx assumes from the ``subsampling_factor`` metadata).
``forward_export(features (B, F, T), lengths)`` is the NeMo/sherpa-onnx signature used by the exporter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressor.asr.vocab import vocabulary_size
from compressor.registry import Args
from compressor.task import Task, to_device

SIZES: dict[str, dict[str, int]] = {
    # QuartzNet 5x5 is (256..512 channels); "cpu" and "tiny" are scaled down for two CPU cores and tests.
    "paper": {"channels": 256, "blocks": 5, "repeat": 5, "kernel": 33},
    "cpu": {"channels": 128, "blocks": 3, "repeat": 2, "kernel": 11},
    "tiny": {"channels": 32, "blocks": 1, "repeat": 1, "kernel": 5},
}


class ConvCTCArgs(Args):
    """Arguments of ``conv_ctc``: ``size`` fills widths, explicit keys win."""

    size: Literal["paper", "cpu", "tiny"] = Field(
        default="cpu", description="widths: paper = QuartzNet 5x5 (256 ch, k=33), cpu = 128 ch, tiny = tests")
    channels: int | None = Field(default=None, ge=4, description="channels of the blocks")
    blocks: int | None = Field(default=None, ge=0, description="QuartzNet blocks (B)")
    repeat: int | None = Field(default=None, ge=1, description="separable-conv units per block (R)")
    kernel: int | None = Field(default=None, ge=1, description="kernel size of the blocks (made odd)")
    dropout: float = Field(default=0.0, ge=0, lt=1)
    feature_dim: int | None = Field(default=None, ge=1, description="default: the data's feature_dim")
    vocab_size: int | None = Field(default=None, ge=2, description="default: the data's vocab_size")


class SeparableConv(nn.Module):
    """Depthwise conv over time, pointwise conv over channels, batch norm (QuartzNet's basic unit)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(cin, cin, kernel, stride=stride, padding=kernel // 2, groups=cin,
                                   bias=False)
        self.pointwise = nn.Conv1d(cin, cout, 1, bias=False)
        self.norm = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.pointwise(self.depthwise(x)))


class QuartzBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, repeat: int, dropout: float) -> None:
        super().__init__()
        self.units = nn.ModuleList(SeparableConv(channels, channels, kernel) for _ in range(repeat))
        self.residual = nn.Sequential(nn.Conv1d(channels, channels, 1, bias=False), nn.BatchNorm1d(channels))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i, unit in enumerate(self.units):
            y = unit(y)
            if i == len(self.units) - 1:
                y = y + self.residual(x)
            y = self.dropout(F.relu(y))
        return y


class ConvCTC(nn.Module):
    """QuartzNet-like CTC acoustic model (see the module docstring)."""

    subsampling_factor = 2

    def __init__(self, feature_dim: int, vocab_size: int, channels: int = 128, blocks: int = 3,
                 repeat: int = 2, kernel: int = 11, dropout: float = 0.0,
                 feature_mean: list[float] | None = None, feature_std: list[float] | None = None) -> None:
        super().__init__()
        kernel = kernel if kernel % 2 else kernel + 1
        self.vocab_size = vocab_size
        self.blank_id = vocab_size - 1
        self.feature_dim = feature_dim
        self.register_buffer("cmvn_mean", torch.tensor(feature_mean, dtype=torch.float32)
                             if feature_mean is not None else torch.zeros(feature_dim))
        self.register_buffer("cmvn_std", torch.tensor(feature_std, dtype=torch.float32)
                             if feature_std is not None else torch.ones(feature_dim))
        self.prolog = SeparableConv(feature_dim, channels, kernel, stride=2)
        self.blocks = nn.ModuleList(QuartzBlock(channels, kernel, repeat, dropout) for _ in range(blocks))
        self.epilog = SeparableConv(channels, channels * 2, kernel + 2)
        self.epilog_pointwise = nn.Sequential(nn.Conv1d(channels * 2, channels * 2, 1), nn.ReLU())
        self.head = nn.Conv1d(channels * 2, vocab_size, 1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths, self.subsampling_factor, rounding_mode="floor")

    def forward_export(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """NeMo layout: features (B, F, T) raw fbank -> log-probs (B, T', V)."""
        x = (features - self.cmvn_mean[None, :, None]) / self.cmvn_std[None, :, None]
        x = F.relu(self.prolog(x))
        for block in self.blocks:
            x = block(x)
        x = self.epilog_pointwise(F.relu(self.epilog(x)))
        return F.log_softmax(self.head(x).transpose(1, 2), dim=-1)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{"log_probs": (B, T', V), "logit_lengths": (B,)}`` from ``features`` (B, T, F)."""
        lengths = batch["feature_lengths"]
        log_probs = self.forward_export(batch["features"].transpose(1, 2), lengths)
        return {"log_probs": log_probs, "logits": log_probs, "logit_lengths": self.output_lengths(lengths)}


def build_conv_ctc(args: ConvCTCArgs, info: dict[str, Any] | None = None) -> ConvCTC:
    """QuartzNet-like separable-conv CTC model over fbank (NeMo-compatible output layout, blank last)."""
    info = info or {}
    feature_dim = args.feature_dim or info.get("feature_dim") or 80
    vocab_size = vocabulary_size("conv_ctc", args.vocab_size, info)
    sizes = dict(SIZES[args.size])
    for key in ("channels", "blocks", "repeat", "kernel"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    mean, std = info.get("feature_mean"), info.get("feature_std")
    if mean is not None and len(mean) != feature_dim:
        mean, std = None, None
    return ConvCTC(int(feature_dim), int(vocab_size), dropout=args.dropout, feature_mean=mean,
                   feature_std=std, **sizes)


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks (what sherpa-onnx's greedy CTC does)."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for row, n in zip(best, lengths.cpu().tolist()):
        ids, prev = [], None
        for t in row[: int(n)].tolist():
            if t != prev and t != blank_id:
                ids.append(t)
            prev = t
        out.append(ids)
    return out


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
        from compressor.asr.metrics import ErrorCounter, detokenize

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
