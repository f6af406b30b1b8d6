"""Discrete speech units and a BERT over them: the speech encoder of seed 000 (Kim et al., Sec. 3.1).

vq-wav2vec maps audio to a sequence of discrete codes, one per 10 ms; a BERT reads them after a [CLS] token.
Offline, compressor builds both itself::

    VQBert
      quantizer        KMeansQuantizer: buffers mean, std (CMVN of the fitting frames), codebook (K, F), fitted
                       code_t = argmin_k || (x_t - mean) / std - codebook_k ||^2      (one code per fbank frame)
      embed            units 0..K-1, then [PAD] = K, [CLS] = K + 1, [MASK] = K + 2 (vocabulary K + 3)
      layers           pre-norm transformer layers (attention that never reads padding) + sinusoidal positions
      final_norm
      unit_states      identity on the contextual unit states (B, T, H): the point DA's hidden masking hooks
      mlm_head         H -> K: masked-unit prediction (the ``masked_units`` task)

The codebook is fitted by k-means on the frames of a corpus by the ``kmeans_units`` strategy (first stage of
a spec), deterministically and cached; a model whose quantiser was never fitted refuses to train. fairseq's own
vq-wav2vec + RoBERTa checkpoints load through :mod:`compressor.external.fairseq_units` (extra ``fairseq``).

Outputs: ``cls`` (B, H) the [CLS] state (the utterance vector PT-KD matches to the text teacher's [CLS]),
``hidden`` (= ``cls``), ``states`` (B, T, H) the unit states, ``unit_lengths`` (B,), and ``mlm_logits`` (N, K)
at the ``mlm_mask`` positions when the batch carries one.

For ``token_span_masking`` (DA on the units) the model declares ``token_key = "units"``, ``mask_token_id``,
``special_token_ids`` and ``tokenize_batch`` (quantises the features into ``batch["units"]``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from compressor.core.errors import UserError
from compressor.core.registry import Args

BERT_SIZES: dict[str, dict[str, int]] = {
    # paper: vq-wav2vec BERT base (12 layers, 768 wide); cpu fits 2 CPU cores; tiny is for tests
    "paper": {"codes": 512, "hidden": 768, "layers": 12, "heads": 12, "ffn": 3072},
    "cpu": {"codes": 256, "hidden": 128, "layers": 3, "heads": 4, "ffn": 256},
    "tiny": {"codes": 24, "hidden": 32, "layers": 1, "heads": 2, "ffn": 64},
}


class VQBertArgs(Args):
    """Arguments of ``vq_bert``: ``size`` fills the widths, explicit keys win."""

    size: Literal["paper", "cpu", "tiny"] = "cpu"
    codes: int | None = Field(default=None, ge=2, description="k-means codebook size K (units)")
    hidden: int | None = Field(default=None, ge=2)
    layers: int | None = Field(default=None, ge=1)
    heads: int | None = Field(default=None, ge=1)
    ffn: int | None = Field(default=None, ge=1)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    feature_dim: int | None = Field(default=None, ge=1, description="default: the data's feature_dim")


def bert_sizes(args: Any) -> dict[str, int]:
    sizes = dict(BERT_SIZES[args.size])
    for key in sizes:
        if getattr(args, key, None) is not None:
            sizes[key] = getattr(args, key)
    if sizes["hidden"] % sizes["heads"]:
        raise UserError(f"vq_bert: hidden {sizes['hidden']} is not a multiple of heads {sizes['heads']}")
    return sizes


class KMeansQuantizer(nn.Module):
    """Frames -> nearest codebook entry after CMVN. Every tensor is a buffer: fitted once, then frozen."""

    def __init__(self, feature_dim: int, codes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("std", torch.ones(feature_dim))
        self.register_buffer("codebook", torch.zeros(codes, feature_dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def codes(self) -> int:
        return int(self.codebook.shape[0])

    def load_fit(self, mean: torch.Tensor, std: torch.Tensor, codebook: torch.Tensor) -> None:
        if tuple(codebook.shape) != tuple(self.codebook.shape):
            raise UserError(f"k-means codebook {tuple(codebook.shape)} does not fit the quantiser "
                            f"{tuple(self.codebook.shape)} (codes x feature_dim)")
        with torch.no_grad():
            self.mean.copy_(mean)
            self.std.copy_(std.clamp_min(1e-5))
            self.codebook.copy_(codebook)
            self.fitted.fill_(True)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, F) fbank -> (B, T) int64 codes (squared distances by expansion: exports as matmuls)."""
        x = self.normalise(features)
        dist = (x * x).sum(-1, keepdim=True) - 2 * x @ self.codebook.t() + (self.codebook ** 2).sum(-1)
        return dist.argmin(-1)


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer; padded keys are masked out of attention (plain ops, exports to ONNX)."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, hidden))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(h // self.heads) + key_bias
        att = self.dropout(torch.softmax(scores, dim=-1)) @ v
        x = x + self.dropout(self.out(att.transpose(1, 2).reshape(b, t, h)))
        return x + self.dropout(self.ff(self.norm2(x)))


def sinusoids(steps: int, dim: int, device: torch.device) -> torch.Tensor:
    pos = torch.arange(steps, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(steps, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return out


class VQBert(nn.Module):
    """k-means units of fbank frames + a BERT over them with [CLS] and [MASK] (module docstring)."""

    reads = ("features", "feature_lengths")
    token_key = "units"
    token_length_key = "unit_lengths"

    def __init__(self, feature_dim: int, codes: int = 256, hidden: int = 128, layers: int = 3, heads: int = 4,
                 ffn: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.quantizer = KMeansQuantizer(feature_dim, codes)
        self.codes = codes
        self.pad_token_id, self.cls_token_id, self.mask_token_id = codes, codes + 1, codes + 2
        self.special_token_ids = [self.pad_token_id, self.cls_token_id]
        self.unit_vocab_size = codes + 3
        self.hidden_size = hidden
        self.embed = nn.Embedding(self.unit_vocab_size, hidden)
        self.embed_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn, dropout) for _ in range(layers))
        self.final_norm = nn.LayerNorm(hidden)
        self.unit_states = nn.Identity()
        self.mlm_head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden),
                                      nn.Linear(hidden, codes))
        self.output_dims = {"cls": hidden, "hidden": hidden, "states": hidden}

    def tokenize_batch(self, batch: dict[str, Any]) -> None:
        """Put the units of the batch's features into ``batch["units"]`` (padding = [PAD]) and their lengths."""
        if "units" in batch:
            return
        with torch.no_grad():
            units = self.quantize(batch["features"])
        lengths = batch["feature_lengths"]
        pad = torch.arange(units.shape[1], device=units.device)[None, :] >= lengths[:, None]
        batch["units"] = units.masked_fill(pad, self.pad_token_id)
        batch["unit_lengths"] = lengths

    def quantize(self, features: torch.Tensor) -> torch.Tensor:
        if self.training and not bool(self.quantizer.fitted):
            raise UserError("vq_bert: the k-means quantiser was never fitted: put the kmeans_units plugin in the "
                            "first stage that trains this model, or load a checkpoint")
        return self.quantizer(features.float())

    def sequence_lengths(self, batch: dict[str, Any], steps: int) -> torch.Tensor:
        lengths = batch["feature_lengths"]
        return (lengths + 1 if steps == int(batch["features"].shape[1]) + 1 else lengths).clamp(max=steps)

    def encode(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """[CLS] + units -> contextual states; the MLM head only where ``batch["mlm_mask"]`` holds."""
        if "units" in batch:
            units, lengths = batch["units"], batch["unit_lengths"]
        else:
            with torch.no_grad():
                units = self.quantize(batch["features"])
            lengths = batch["feature_lengths"]
        b, t = units.shape
        ids = torch.cat([torch.full((b, 1), self.cls_token_id, dtype=units.dtype, device=units.device), units], 1)
        valid = torch.arange(t + 1, device=units.device)[None, :] < (lengths[:, None] + 1)
        ids = ids.masked_fill(~valid, self.pad_token_id)
        x = self.embed(ids) + sinusoids(t + 1, self.hidden_size, units.device)
        x = self.embed_dropout(x)
        key_bias = torch.zeros(b, 1, 1, t + 1, device=x.device).masked_fill(~valid[:, None, None, :], -1e9)
        for layer in self.layers:
            x = layer(x, key_bias)
        x = self.final_norm(x)
        cls, states = x[:, 0], self.unit_states(x[:, 1:])
        out = {"cls": cls, "hidden": cls, "states": states, "unit_lengths": lengths}
        if "mlm_mask" in batch:
            out["mlm_logits"] = self.mlm_head(states[batch["mlm_mask"]])
        return out

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.encode(batch)


def build_vq_bert(args: VQBertArgs, info: dict[str, Any] | None = None) -> VQBert:
    """The offline vq-wav2vec-BERT analogue: k-means units (fitted by ``kmeans_units``) + a small BERT."""
    info = info or {}
    feature_dim = args.feature_dim or info.get("feature_dim") or 80
    return VQBert(int(feature_dim), dropout=args.dropout, **bert_sizes(args))
