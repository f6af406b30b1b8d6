"""Sequence classifiers over feature frames: the SLU intent classifier and the quickstart models.

Input ``batch["features"]`` (B, T, F) with ``batch["feature_lengths"]`` (B,); output ``{"logits": (B, C)}``
plus ``{"hidden": (B, H)}``, the pooled utterance representation (for representation KD). Global CMVN
statistics of the training split (``info["feature_mean"/"feature_std"]``) are baked in as buffers, so the
model (and its ONNX export) takes raw fbank features.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from compressor.core.registry import Args


class SeqClassifierArgs(Args):
    encoder: Literal["lstm", "conv", "mlp"] = "lstm"
    hidden: int = Field(default=128, ge=1)
    layers: int = Field(default=2, ge=1)
    bidirectional: bool = False
    dropout: float = Field(default=0.0, ge=0, lt=1)
    input_dim: int | None = Field(default=None, ge=1, description="default: the data's feature_dim")
    num_classes: int | None = Field(default=None, ge=2, description="default: the data's num_classes")


class SeqClassifier(nn.Module):
    """Encoder (LSTM, 1-D conv or frame-wise MLP) -> masked mean pooling -> linear classifier."""

    def __init__(self, input_dim: int, num_classes: int, encoder: str = "lstm", hidden: int = 128,
                 layers: int = 2, bidirectional: bool = False, dropout: float = 0.0,
                 feature_mean: list[float] | None = None, feature_std: list[float] | None = None) -> None:
        super().__init__()
        self.kind = encoder
        self.input_dim = input_dim
        mean = torch.tensor(feature_mean, dtype=torch.float32) if feature_mean else torch.zeros(input_dim)
        # floored in Python: built on the meta device (validation), clamp_min would import torch._dynamo
        std = torch.tensor([max(float(s), 1e-5) for s in feature_std], dtype=torch.float32) if feature_std \
            else torch.ones(input_dim)
        self.register_buffer("feature_mean", mean)
        self.register_buffer("feature_std", std)
        if encoder == "lstm":
            self.encoder = nn.LSTM(input_dim, hidden, num_layers=layers, batch_first=True,
                                   bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
            out_dim = hidden * (2 if bidirectional else 1)
        else:
            blocks: list[nn.Module] = []
            dim = input_dim
            for _ in range(layers):
                if encoder == "conv":
                    blocks += [nn.Conv1d(dim, hidden, kernel_size=5, padding=2), nn.ReLU(), nn.Dropout(dropout)]
                else:
                    blocks += [nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
                dim = hidden
            self.encoder = nn.Sequential(*blocks)
            out_dim = hidden
        self.classifier = nn.Linear(out_dim, num_classes)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        features = (features - self.feature_mean) / self.feature_std
        if self.kind == "lstm":
            h, _ = self.encoder(features)
        elif self.kind == "conv":
            h = self.encoder(features.transpose(1, 2)).transpose(1, 2)
        else:
            h = self.encoder(features)
        if lengths is None:
            return h.mean(1)
        mask = (torch.arange(h.shape[1], device=h.device)[None, :] < lengths[:, None]).to(h.dtype)
        return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        pooled = self.encode(batch["features"], batch.get("feature_lengths"))
        return {"logits": self.classifier(pooled), "hidden": pooled}


def build_seq_classifier(args: SeqClassifierArgs, info: dict[str, Any] | None = None) -> SeqClassifier:
    """A speech/feature sequence classifier (LSTM, conv or MLP encoder)."""
    info = info or {}
    input_dim = args.input_dim or info.get("feature_dim")
    num_classes = args.num_classes or info.get("num_classes")
    if input_dim is None or num_classes is None:
        raise ValueError("seq_classifier needs input_dim and num_classes (from its args or the data)")
    return SeqClassifier(int(input_dim), int(num_classes), args.encoder, args.hidden, args.layers,
                         args.bidirectional, args.dropout, info.get("feature_mean"), info.get("feature_std"))
