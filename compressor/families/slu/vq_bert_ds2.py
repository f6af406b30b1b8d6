"""The SLU model of seed 000 (Kim et al., Sec. 3.1 / 4.2): vq-wav2vec-BERT speech encoder + DeepSpeech2 AM.

::

    VQBertDS2
      encoder          VQBert: k-means units -> BERT states h^s = (h_[CLS], h_1..h_T)   (frozen when fine-tuning)
      am               DeepSpeech2 acoustic model over h_1..h_T, read as a (hidden x time) image:
        conv           Conv2d(1, 32, 41x11, stride 2x2) + BN + Hardtanh(0, 20),
                       Conv2d(32, 32, 21x11, stride 2x1) + BN + Hardtanh   (hidden / 4, time / 2; padding zeroed)
        rnn            bidirectional LSTMs (5 x 768 in the paper; the backward one within each length)
        ctc_head       Linear -> characters + blank (AM pre-training with CTC, task ``ctc``)
      classifier       max-pool over the real frames, then Linear -> intent logits o^s

Outputs: ``logits`` (B, C), ``hidden`` (B, 2H) the pooled AM vector, ``cls`` (B, H_bert) the speech [CLS],
``log_probs`` (B, T', V) and ``logit_lengths`` for CTC. When the batch carries ``mlm_mask`` (the
``masked_units`` task: MLM and PT-KD train the encoder inside this model) only the encoder runs and the outputs
are its own (``cls``, ``states``, ``mlm_logits``). The model exports through the classifier
path (fbank features -> intent logits): the quantiser, the BERT and the AM are one graph.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.families.slu.student import preset_with_overrides, reverse_within, slu_dimensions
from compressor.families.units.model import BERT_SIZES, VQBert, bert_sizes

AM_SIZES: dict[str, dict[str, int]] = {
    # Sec. 4.2: two 2-D CNN layers of 32 channels, five bidirectional LSTMs of 768
    "paper": {"am_channels": 32, "am_layers": 5, "am_hidden": 768},
    "cpu": {"am_channels": 32, "am_layers": 2, "am_hidden": 128},
    "tiny": {"am_channels": 4, "am_layers": 1, "am_hidden": 16},
}


class VQBertDS2Args(Args):
    """Arguments of ``vq_bert_ds2``: ``size`` fills both the BERT's and the AM's widths, explicit keys win."""

    size: Literal["paper", "cpu", "tiny"] = "cpu"
    codes: int | None = Field(default=None, ge=2, description="k-means codebook size K (units)")
    hidden: int | None = Field(default=None, ge=2, description="BERT width")
    layers: int | None = Field(default=None, ge=1, description="BERT layers")
    heads: int | None = Field(default=None, ge=1)
    ffn: int | None = Field(default=None, ge=1)
    am_channels: int | None = Field(default=None, ge=1, description="channels of both 2-D conv layers (32)")
    am_layers: int | None = Field(default=None, ge=1, description="bidirectional LSTM layers")
    am_hidden: int | None = Field(default=None, ge=1, description="LSTM width per direction")
    kernels: list[tuple[int, int]] = Field(default=[(41, 11), (21, 11)], min_length=2, max_length=2,
                                           description="(hidden, time) kernels of the two conv layers")
    strides: list[tuple[int, int]] = Field(default=[(2, 2), (2, 1)], min_length=2, max_length=2,
                                           description="(hidden, time) strides of the two conv layers")
    dropout: float = Field(default=0.1, ge=0, lt=1)
    feature_dim: int | None = Field(default=None, ge=1, description="default: the data's feature_dim")
    vocab_size: int | None = Field(default=None, ge=2, description="CTC characters + blank (default: the data's)")
    num_classes: int | None = Field(default=None, ge=2, description="intents (default: the data's)")


class MaskedLSTM(nn.Module):
    """Bidirectional LSTM layers whose backward direction reads each utterance reversed within its length, so
    no output depends on the padding of its batch (and the graph exports with dynamic lengths)."""

    def __init__(self, input_size: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.forward_layers = nn.ModuleList(
            nn.LSTM(input_size if i == 0 else 2 * hidden, hidden, batch_first=True) for i in range(layers))
        self.backward_layers = nn.ModuleList(
            nn.LSTM(input_size if i == 0 else 2 * hidden, hidden, batch_first=True) for i in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for i, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if i > 0:
                x = self.dropout(x)
            back = reverse_within(bwd(reverse_within(x, lengths))[0], lengths)
            x = torch.cat([fwd(x)[0], back], dim=-1)
        return x


def conv_out(n: int | torch.Tensor, kernel: int, stride: int) -> Any:
    """Output size of a conv with padding kernel // 2."""
    pad = kernel // 2
    if isinstance(n, torch.Tensor):
        return torch.div(n + 2 * pad - kernel, stride, rounding_mode="floor") + 1
    return (n + 2 * pad - kernel) // stride + 1


class DeepSpeech2AM(nn.Module):
    """2-D CNN over (hidden x time) + bidirectional LSTMs + CTC head (DeepSpeech2, Amodei et al. 2016)."""

    def __init__(self, input_dim: int, vocab_size: int, channels: int, layers: int, hidden: int,
                 kernels: list[tuple[int, int]], strides: list[tuple[int, int]], dropout: float) -> None:
        super().__init__()
        self.kernels, self.strides = [tuple(k) for k in kernels], [tuple(s) for s in strides]
        convs: list[nn.Module] = []
        height, in_ch = input_dim, 1
        for (kh, kt), (sh, st) in zip(self.kernels, self.strides):
            convs.append(nn.Conv2d(in_ch, channels, (kh, kt), stride=(sh, st), padding=(kh // 2, kt // 2)))
            convs.append(nn.BatchNorm2d(channels))
            in_ch = channels
            height = conv_out(height, kh, sh)
        if height < 1:
            raise ValueError(f"DeepSpeech2 convolutions leave no rows of the {input_dim}-wide input")
        self.conv = nn.ModuleList(convs)
        self.rnn = MaskedLSTM(channels * height, hidden, layers, dropout)
        self.out_dim = self.rnn.out_dim
        self.ctc_head = nn.Linear(self.out_dim, vocab_size)

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        for (_, kt), (_, st) in zip(self.kernels, self.strides):
            lengths = conv_out(lengths, kt, st)
        return lengths

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, H) encoder states of ``lengths`` real steps -> (B, T', 2 * hidden) states, their lengths."""
        x = states.transpose(1, 2)[:, None]  # (B, 1, H, T): DeepSpeech2's (frequency x time) image
        for i in range(0, len(self.conv), 2):
            x = x * (torch.arange(x.shape[3], device=x.device)[None, :] < lengths[:, None])[:, None, None, :]
            x = F.hardtanh(self.conv[i + 1](self.conv[i](x)), 0.0, 20.0)
            _, kt = self.kernels[i // 2]
            lengths = conv_out(lengths, kt, self.strides[i // 2][1])
        x = x * (torch.arange(x.shape[3], device=x.device)[None, :] < lengths[:, None])[:, None, None, :]
        b, c, h, t = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b, t, c * h)
        return self.rnn(x, lengths), lengths


class VQBertDS2(nn.Module):
    """vq-wav2vec-BERT analogue + DeepSpeech2 AM + max-pool + intent projection (module docstring)."""

    reads = ("features", "feature_lengths")
    token_key = "units"
    token_length_key = "unit_lengths"

    def __init__(self, feature_dim: int, vocab_size: int, num_classes: int, bert: dict[str, int],
                 am_channels: int, am_layers: int, am_hidden: int, kernels: list[tuple[int, int]],
                 strides: list[tuple[int, int]], dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = VQBert(feature_dim, dropout=dropout, **bert)
        self.am = DeepSpeech2AM(bert["hidden"], vocab_size, am_channels, am_layers, am_hidden, kernels, strides,
                                dropout)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.am.out_dim, num_classes)
        self.num_classes, self.vocab_size = num_classes, vocab_size
        self.mask_token_id = self.encoder.mask_token_id
        self.pad_token_id = self.encoder.pad_token_id
        self.special_token_ids = list(self.encoder.special_token_ids)
        self.unit_vocab_size = self.encoder.unit_vocab_size
        self.output_dims = {"logits": num_classes, "hidden": self.am.out_dim, "cls": bert["hidden"],
                            "states": bert["hidden"], "log_probs": vocab_size}

    def tokenize_batch(self, batch: dict[str, Any]) -> None:
        self.encoder.tokenize_batch(batch)

    def sequence_lengths(self, batch: dict[str, Any], steps: int) -> torch.Tensor:
        """Real steps of a sequence of ``steps``: the BERT's (units, or [CLS] + units) or the AM's frames."""
        lengths = batch["feature_lengths"]
        t = int(batch["features"].shape[1])
        if steps == t + 1:
            return (lengths + 1).clamp(max=steps)
        if steps == t:
            return lengths.clamp(max=steps)
        return self.am.frames(lengths).clamp(max=steps)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        enc = self.encoder.encode(batch)
        if "mlm_mask" in batch:  # masked-unit prediction trains the encoder alone: the AM would idle
            return enc
        am, lengths = self.am(enc["states"], enc["unit_lengths"])
        mask = torch.arange(am.shape[1], device=am.device)[None, :] < lengths[:, None]
        pooled = am.masked_fill(~mask[..., None], float("-inf")).max(dim=1).values
        out = {"logits": self.classifier(self.dropout(pooled)), "hidden": pooled, "cls": enc["cls"],
               "states": enc["states"], "log_probs": F.log_softmax(self.am.ctc_head(am), dim=-1),
               "logit_lengths": lengths}
        return out


def build_vq_bert_ds2(args: VQBertDS2Args, info: dict[str, Any] | None = None) -> VQBertDS2:
    """Seed 000's SLU model: vq-wav2vec-BERT analogue + DeepSpeech2 AM (CTC head) + intent projection."""
    info = info or {}
    feature_dim, num_classes, vocab = slu_dimensions("vq_bert_ds2", args, info)
    am = preset_with_overrides(AM_SIZES[args.size], args)
    return VQBertDS2(feature_dim, vocab, num_classes, bert_sizes(args), kernels=args.kernels,
                     strides=args.strides, dropout=args.dropout, **am)


assert set(BERT_SIZES) == set(AM_SIZES)


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "vq_bert_ds2", build_vq_bert_ds2, args=VQBertDS2Args,
                 reads=("features", "feature_lengths"),
                 doc="seed 000's SLU model: k-means units + BERT ([CLS], [MASK]) + DeepSpeech2 AM (CTC head) + "
                     "max-pooled intent projection")
