"""The end-to-end SLU student of seed 001 (Cho et al.) Sec. 3.3 / 4.2, after Lugosch et al. (2019).

An acoustic module pre-trained with ASR (CTC), then frozen, under a recurrent intent classifier::

    SLUStudent
      feature_mean, feature_std       buffers: global CMVN of the training split (the model takes raw fbank)
      acoustic                        the ASR-pre-trained part (freeze it with layer_freezing: [acoustic])
        subsample                     Conv1d(k=5, stride=2) + ReLU, Conv1d(k=5, stride=1 or 2) + ReLU (time / 2 or 4)
        rnn                           bidirectional GRU layers (the features the intent module reads)
        ctc_head                      Linear -> characters + blank: CTC pre-training (task ctc)
      intent                          bidirectional GRU layers over the acoustic states
      classifier                      max-pool over the real frames, then Linear -> intents (task classification)

Outputs: ``logits`` (B, C) intents; ``hidden`` (B, H) the max-pooled utterance vector; ``acoustic`` and
``intent_states`` (B, T', .); ``log_probs`` (B, T', V) and ``logit_lengths`` (B,) for the CTC task, so one
model trains in a CTC stage (``task: {name: ctc}``) and a classification stage.

The GRUs are bidirectional by default (unidirectional GRUs learned CTC on read speech far more slowly here:
72% vs 4% validation CER after 12 and 9 epochs). The backward direction runs on each utterance reversed
within its own length, so no output depends on the padding of its batch (``nn.GRU(bidirectional=True)`` would
read the padding first), and the model exports to ONNX with dynamic lengths through the classifier export path
(``model.onnx``: fbank features -> intent logits).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressor.core.registry import Args
from compressor.families.asr.vocab import vocabulary_size

SIZES: dict[str, dict[str, int]] = {
    # Lugosch et al.: ~2 x 128-256-unit bidirectional GRUs per module; "cpu" fits 2 CPU cores, "tiny" tests.
    "paper": {"conv_channels": 128, "acoustic_layers": 3, "acoustic_hidden": 256, "intent_layers": 2,
              "intent_hidden": 128},
    "cpu": {"conv_channels": 64, "acoustic_layers": 2, "acoustic_hidden": 96, "intent_layers": 1,
            "intent_hidden": 64},
    "tiny": {"conv_channels": 16, "acoustic_layers": 1, "acoustic_hidden": 16, "intent_layers": 1,
             "intent_hidden": 16},
}


class SLUStudentArgs(Args):
    """Arguments of ``slu_student``: ``size`` fills the widths, explicit keys win."""

    size: Literal["paper", "cpu", "tiny"] = "cpu"
    conv_channels: int | None = Field(default=None, ge=1)
    acoustic_layers: int | None = Field(default=None, ge=1)
    acoustic_hidden: int | None = Field(default=None, ge=1)
    intent_layers: int | None = Field(default=None, ge=1)
    intent_hidden: int | None = Field(default=None, ge=1)
    subsampling: Literal[2, 4] = Field(default=2, description="time subsampling of the acoustic module")
    bidirectional: bool = Field(default=True, description="bidirectional GRUs (the backward direction within "
                                "each utterance's length)")
    dropout: float = Field(default=0.1, ge=0, lt=1)
    feature_dim: int | None = Field(default=None, ge=1, description="default: the data's feature_dim")
    vocab_size: int | None = Field(default=None, ge=2, description="CTC characters + blank (default: the data's)")
    num_classes: int | None = Field(default=None, ge=2, description="intents (default: the data's)")


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of (B, T, D) ``x`` reversed within its length; padding stays where it is."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[2]))


class MaskedGRU(nn.Module):
    """GRU layers; when bidirectional, the backward direction reads each utterance reversed within its length,
    so outputs never depend on padding. ``forward(x, lengths) -> (B, T, H or 2H)``."""

    def __init__(self, input_size: int, hidden: int, layers: int, bidirectional: bool, dropout: float) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        width = hidden * (2 if bidirectional else 1)
        self.forward_layers = nn.ModuleList(
            nn.GRU(input_size if i == 0 else width, hidden, batch_first=True) for i in range(layers))
        self.backward_layers = nn.ModuleList(
            nn.GRU(input_size if i == 0 else width, hidden, batch_first=True) for i in range(layers)
        ) if bidirectional else None
        self.dropout = nn.Dropout(dropout)
        self.out_dim = width

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for i, fwd in enumerate(self.forward_layers):
            if i > 0:
                x = self.dropout(x)
            out = fwd(x)[0]
            if self.backward_layers is not None:
                back = reverse_within(self.backward_layers[i](reverse_within(x, lengths))[0], lengths)
                out = torch.cat([out, back], dim=-1)
            x = out
        return x


class Acoustic(nn.Module):
    """Conv subsampling + GRUs + a CTC head: pre-trained with ASR, then frozen under the intent module."""

    def __init__(self, feature_dim: int, vocab_size: int, channels: int, layers: int, hidden: int,
                 subsampling: int, bidirectional: bool, dropout: float) -> None:
        super().__init__()
        self.strides = (2, subsampling // 2)
        self.subsample = nn.ModuleList([nn.Conv1d(feature_dim, channels, 5, stride=self.strides[0], padding=2),
                                        nn.Conv1d(channels, channels, 5, stride=self.strides[1], padding=2)])
        self.rnn = MaskedGRU(channels, hidden, layers, bidirectional, dropout)
        self.out_dim = self.rnn.out_dim
        self.ctc_head = nn.Linear(self.out_dim, vocab_size)

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths`` input frames (each conv: floor((L - 1) / stride) + 1)."""
        for stride in self.strides:
            lengths = torch.div(lengths - 1, stride, rounding_mode="floor") + 1
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, F) normalised features of ``lengths`` real frames -> (B, T', H) states.

        Every conv sees zeros past an utterance's end, as it would alone: padding never leaks in."""
        h = x.transpose(1, 2)
        for conv, stride in zip(self.subsample, self.strides):
            h = h * (torch.arange(h.shape[2], device=h.device)[None, :] < lengths[:, None])[:, None, :].to(h.dtype)
            h = torch.relu(conv(h))
            lengths = torch.div(lengths - 1, stride, rounding_mode="floor") + 1
        return self.rnn(h.transpose(1, 2), lengths)


class SLUStudent(nn.Module):
    """Acoustic module (CTC-pre-trained) + recurrent intent classifier with max-pooling (module docstring)."""

    reads = ("features", "feature_lengths")

    def __init__(self, feature_dim: int, vocab_size: int, num_classes: int, conv_channels: int = 96,
                 acoustic_layers: int = 2, acoustic_hidden: int = 128, intent_layers: int = 1,
                 intent_hidden: int = 96, subsampling: int = 2, bidirectional: bool = True, dropout: float = 0.1,
                 feature_mean: list[float] | None = None, feature_std: list[float] | None = None) -> None:
        super().__init__()
        mean = torch.tensor(feature_mean, dtype=torch.float32) if feature_mean else torch.zeros(feature_dim)
        std = torch.tensor(feature_std, dtype=torch.float32) if feature_std else torch.ones(feature_dim)
        self.register_buffer("feature_mean", mean)
        self.register_buffer("feature_std", std.clamp_min(1e-5))
        self.num_classes = num_classes
        self.vocab_size = vocab_size
        self.acoustic = Acoustic(feature_dim, vocab_size, conv_channels, acoustic_layers, acoustic_hidden,
                                 subsampling, bidirectional, dropout)
        self.intent = MaskedGRU(self.acoustic.out_dim, intent_hidden, intent_layers, bidirectional, dropout)
        width = self.intent.out_dim
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)
        self.output_dims = {"logits": num_classes, "hidden": width, "intent_states": width,
                            "acoustic": self.acoustic.out_dim, "log_probs": vocab_size}

    def sequence_lengths(self, batch: dict[str, Any], steps: int) -> torch.Tensor:
        """Real frames of a sequence of ``steps`` frames: the acoustic frame rate, or the features'."""
        lengths = batch["feature_lengths"]
        t_in = int(batch["features"].shape[1])
        sub = self.acoustic.frames(lengths)
        if steps == int(self.acoustic.frames(torch.tensor([t_in]))[0]):
            return sub.clamp(max=steps)
        return lengths.clamp(max=steps) if steps == t_in else torch.div(
            lengths * steps + t_in - 1, t_in, rounding_mode="floor").clamp(max=steps)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = (batch["features"] - self.feature_mean) / self.feature_std
        lengths = self.acoustic.frames(batch["feature_lengths"])
        acoustic = self.acoustic(x, batch["feature_lengths"])
        states = self.intent(self.dropout(acoustic), lengths)
        mask = torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None]
        pooled = states.masked_fill(~mask[..., None], float("-inf")).max(dim=1).values
        log_probs = F.log_softmax(self.acoustic.ctc_head(acoustic), dim=-1)
        return {"logits": self.classifier(self.dropout(pooled)), "hidden": pooled, "intent_states": states,
                "acoustic": acoustic, "log_probs": log_probs, "logit_lengths": lengths}


def slu_dimensions(family: str, args: Any, info: dict[str, Any]) -> tuple[int, int, int]:
    """Feature dimension, intent count and CTC vocabulary of an SLU model, from its args or else the data."""
    feature_dim = args.feature_dim or info.get("feature_dim") or 80
    num_classes = args.num_classes or info.get("num_classes")
    if num_classes is None:
        raise ValueError(f"{family} needs num_classes (from its args or the data's intents)")
    return int(feature_dim), int(num_classes), vocabulary_size(family, args.vocab_size, info)


def preset_with_overrides(preset: dict[str, int], args: Any) -> dict[str, int]:
    """A size preset with every width the args set explicitly (not None) put over it."""
    return {key: value if getattr(args, key) is None else getattr(args, key) for key, value in preset.items()}


def build_slu_student(args: SLUStudentArgs, info: dict[str, Any] | None = None) -> SLUStudent:
    """End-to-end SLU student: CTC-pre-trainable acoustic module + GRU intent classifier (seed 001 Sec. 3.3)."""
    info = info or {}
    feature_dim, num_classes, vocab = slu_dimensions("slu_student", args, info)
    sizes = preset_with_overrides(SIZES[args.size], args)
    mean, std = info.get("feature_mean"), info.get("feature_std")
    if mean is not None and len(mean) != feature_dim:
        mean, std = None, None
    return SLUStudent(feature_dim, vocab, num_classes, subsampling=args.subsampling,
                      bidirectional=args.bidirectional, dropout=args.dropout, feature_mean=mean, feature_std=std,
                      **sizes)
