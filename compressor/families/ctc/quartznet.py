"""QuartzNet B×R (seed 003, Table 1; Kriman et al. 2020): a CTC acoustic model of 1-D time-channel separable
convolutions, in NeMo's ``EncDecCTCModel`` layout so the existing NeMo-CTC export serves it unchanged.

Structure (every name is a module path that ``layer_freezing`` and ``init_from`` can address)::

    QuartzNet
      cmvn_mean, cmvn_std      buffers: global CMVN of the training data (an exported model takes raw fbank)
      encoder.layers.0         C1: one separable unit, K=33, C=256, stride 2
      encoder.layers.1 .. B    B1..B5, each repeated S = B/5 times; R units per block, residual connection
      encoder.layers.B+1       C2: one separable unit, K=87, C=512, dilation 2
      encoder.layers.B+2       C3: pointwise conv, C=1024
      decoder                  C4: pointwise conv -> vocabulary logits (the "shallow decoder" of Sec. 1)

A unit (``encoder.layers.i.units.j``) is a K-sized depthwise conv, a pointwise conv, batch norm and ReLU
(Sec. 3); a block's residual (``encoder.layers.i.residual``, pointwise conv + batch norm) is added before the
last unit's ReLU. Padded frames are zeroed before every time convolution (NeMo's masked convolutions), so an
utterance decodes the same alone or padded in a batch.

``preset`` names the B×R shape: ``15x5`` (Table 1, 18.9M parameters at ``size: paper``), ``5x3`` (Sec. 4.2)
or any ``BxR`` with B a multiple of 5. ``size`` sets widths and kernels: ``paper`` is Table 1; ``cpu`` divides
channels by 4 and kernels by about 3, ``tiny`` divides channels by 16 and kernels by about 6 (tests).

Output: ``log_probs`` (B, ceil(T / 2), V) with the blank as the LAST id, of which ``T' = floor(T / 2)`` frames are
valid (``logit_lengths``; what sherpa-onnx decodes);
``forward_export(features (B, F, T), lengths)`` is the NeMo/sherpa-onnx CTC signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from compressor.core.registry import Args
from compressor.families.asr.vocab import vocabulary_size


@dataclass(frozen=True)
class BlockSpec:
    """One row of Table 1: R units of kernel K and C output channels, the block repeated S times."""

    name: str
    repeat: int  # R
    kernel: int  # K
    channels: int  # C
    times: int = 1  # S
    stride: int = 1
    dilation: int = 1
    separable: bool = True
    residual: bool = False


#: Table 1 at paper size, for QuartzNet 15x5 (R = 5, S = 3). Other B×R presets change R and S only.
TABLE_1: tuple[BlockSpec, ...] = (
    BlockSpec("C1", 1, 33, 256, stride=2),
    BlockSpec("B1", 5, 33, 256, 3, residual=True),
    BlockSpec("B2", 5, 39, 256, 3, residual=True),
    BlockSpec("B3", 5, 51, 512, 3, residual=True),
    BlockSpec("B4", 5, 63, 512, 3, residual=True),
    BlockSpec("B5", 5, 75, 512, 3, residual=True),
    BlockSpec("C2", 1, 87, 512, dilation=2),
    BlockSpec("C3", 1, 1, 1024, separable=False),
)

#: size -> (channel divisor, kernel divisor)
SIZES: dict[str, tuple[int, int]] = {"paper": (1, 1), "cpu": (4, 3), "tiny": (16, 6)}
PAPER_PARAMETERS = {"15x5": 18.9e6, "5x3": 6.4e6}


def _odd(k: float) -> int:
    k = max(1, int(round(k)))
    return k if k % 2 else k + 1


def table(preset: str = "15x5", size: str = "paper", width: float | None = None,
          kernel_scale: float | None = None) -> list[BlockSpec]:
    """The rows of Table 1 for a B×R preset and a size (``width``/``kernel_scale`` override the size's)."""
    blocks, repeat = (int(x) for x in preset.split("x"))
    times = blocks // 5
    ch_div, k_div = SIZES[size]
    w = width if width is not None else 1.0 / ch_div
    ks = kernel_scale if kernel_scale is not None else 1.0 / k_div
    out = []
    for row in TABLE_1:
        out.append(BlockSpec(
            row.name, repeat if row.residual else row.repeat,
            row.kernel if row.kernel == 1 else _odd(row.kernel * ks), max(4, int(round(row.channels * w))),
            times if row.residual else row.times, row.stride, row.dilation, row.separable, row.residual))
    return out


class QuartzNetArgs(Args):
    """Arguments of ``quartznet``: ``preset`` is B×R, ``size`` the widths; ``width``/``kernel_scale`` override."""

    preset: str = Field(default="5x3", description="B×R: 15x5 (Table 1, 18.9M at paper size), 5x3, or any BxR "
                                                   "with B a multiple of 5 (5 block groups, each repeated B/5)")
    size: Literal["paper", "cpu", "tiny"] = Field(
        default="cpu", description="paper = Table 1 widths/kernels (GPU); cpu = channels/4, kernels/3; "
                                   "tiny = channels/16, kernels/6 (tests)")
    width: float | None = Field(default=None, gt=0, le=8, description="channel multiplier of Table 1 (overrides "
                                                                      "the size's)")
    kernel_scale: float | None = Field(default=None, gt=0, le=1, description="kernel multiplier of Table 1 "
                                                                             "(made odd; overrides the size's)")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="after every ReLU of the encoder")
    feature_dim: int | None = Field(default=None, ge=1, description="default: the data's feature_dim")
    vocab_size: int | None = Field(default=None, ge=2, description="default: the data's vocab_size")

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str) -> str:
        m = re.fullmatch(r"(\d+)x(\d+)", v)
        if not m or int(m.group(1)) % 5 or int(m.group(1)) < 5 or int(m.group(2)) < 1:
            raise ValueError(f"expected BxR with B a positive multiple of 5 and R >= 1, e.g. 15x5 or 5x3 "
                             f"(got {v!r})")
        return v


def _mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero the frames of ``x`` (B, C, T) at or after each utterance's length."""
    keep = torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None]
    return x * keep[:, None, :].to(x.dtype)


class SeparableUnit(nn.Module):
    """Depthwise conv over time (K), pointwise conv over channels, batch norm; ReLU is the block's job."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1,
                 separable: bool = True) -> None:
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.stride = stride
        if separable:
            self.depthwise = nn.Conv1d(cin, cin, kernel, stride=stride, padding=pad, dilation=dilation,
                                       groups=cin, bias=False)
            self.pointwise = nn.Conv1d(cin, cout, 1, bias=False)
        else:
            self.depthwise = None
            self.pointwise = nn.Conv1d(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation,
                                       bias=False)
        self.norm = nn.BatchNorm1d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = _mask(x, lengths)
        if self.depthwise is not None:
            x = self.depthwise(x)
        return self.norm(self.pointwise(x))


class QuartzBlock(nn.Module):
    """R units (ReLU + dropout between them) with an optional residual added before the last ReLU."""

    def __init__(self, cin: int, spec: BlockSpec, dropout: float) -> None:
        super().__init__()
        self.stride = spec.stride
        self.units = nn.ModuleList(
            SeparableUnit(cin if i == 0 else spec.channels, spec.channels, spec.kernel,
                          spec.stride if i == 0 else 1, spec.dilation, spec.separable)
            for i in range(spec.repeat))
        self.residual = (nn.Sequential(nn.Conv1d(cin, spec.channels, 1, bias=False),
                                       nn.BatchNorm1d(spec.channels, eps=1e-3)) if spec.residual else None)
        self.dropout = nn.Dropout(dropout)

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        # The convolution yields ceil(L / stride) frames; floor(L / stride) of them count as valid (the rest
        # is masked), because sherpa-onnx decodes floor(T / subsampling_factor) frames of a NeMo CTC model:
        # a model that learnt to emit on the extra frame would lose that token on the device.
        if self.stride == 1:
            return lengths
        return torch.div(lengths, self.stride, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_lengths = self.out_lengths(lengths)
        y = x
        for i, unit in enumerate(self.units):
            y = unit(y, lengths if i == 0 else out_lengths)
            if i == len(self.units) - 1 and self.residual is not None:
                y = y + self.residual(x)
            y = self.dropout(F.relu(y))
        return y, out_lengths


class QuartzEncoder(nn.Module):
    def __init__(self, feature_dim: int, specs: list[BlockSpec], dropout: float) -> None:
        super().__init__()
        layers = []
        cin = feature_dim
        for spec in specs:
            for _ in range(spec.times):
                layers.append(QuartzBlock(cin, spec, dropout))
                cin = spec.channels
        self.layers = nn.ModuleList(layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.layers:
            x, lengths = layer(x, lengths)
        return x, lengths


class QuartzNet(nn.Module):
    """QuartzNet B×R CTC model over raw fbank (see the module docstring)."""

    subsampling_factor = 2
    #: the stack whose first N children ``layer_freezing: {first_blocks: N}`` freezes
    block_container: ClassVar[str] = "encoder.layers"

    def __init__(self, feature_dim: int, vocab_size: int, specs: list[BlockSpec], dropout: float = 0.0,
                 feature_mean: list[float] | None = None, feature_std: list[float] | None = None) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.blank_id = vocab_size - 1
        self.feature_dim = feature_dim
        self.specs = list(specs)
        self.register_buffer("cmvn_mean", torch.tensor(feature_mean, dtype=torch.float32)
                             if feature_mean is not None else torch.zeros(feature_dim))
        self.register_buffer("cmvn_std", torch.tensor(feature_std, dtype=torch.float32)
                             if feature_std is not None else torch.ones(feature_dim))
        self.encoder = QuartzEncoder(feature_dim, self.specs, dropout)
        self.decoder = nn.Conv1d(self.encoder.out_channels, vocab_size, 1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder.layers:
            lengths = layer.out_lengths(lengths)
        return lengths

    def forward_export(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """NeMo layout: features (B, F, T) raw fbank -> log-probs (B, T', V)."""
        x = (features - self.cmvn_mean[None, :, None]) / self.cmvn_std[None, :, None]
        x, _ = self.encoder(x, lengths)
        return F.log_softmax(self.decoder(x).transpose(1, 2), dim=-1)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{"log_probs": (B, T', V), "logit_lengths": (B,)}`` from ``features`` (B, T, F)."""
        lengths = batch["feature_lengths"]
        log_probs = self.forward_export(batch["features"].transpose(1, 2), lengths)
        return {"log_probs": log_probs, "logits": log_probs, "logit_lengths": self.output_lengths(lengths)}


def build_quartznet(args: QuartzNetArgs, info: dict[str, Any] | None = None) -> QuartzNet:
    """QuartzNet B×R (seed 003 Table 1) CTC model over fbank, NeMo layout (blank last)."""
    info = info or {}
    feature_dim = int(args.feature_dim or info.get("feature_dim") or 80)
    vocab_size = vocabulary_size("quartznet", args.vocab_size, info)
    mean, std = info.get("feature_mean"), info.get("feature_std")
    if mean is not None and len(mean) != feature_dim:
        mean, std = None, None
    specs = table(args.preset, args.size, args.width, args.kernel_scale)
    return QuartzNet(feature_dim, vocab_size, specs, args.dropout, mean, std)


def describe(model: QuartzNet) -> list[dict[str, Any]]:
    """Table 1 for a built model: each row's R, K, C, S and its parameter count."""
    rows, i = [], 0
    for spec in model.specs:
        params = sum(p.numel() for layer in model.encoder.layers[i:i + spec.times] for p in layer.parameters())
        rows.append({"block": spec.name, "R": spec.repeat, "K": spec.kernel, "C": spec.channels, "S": spec.times,
                     "parameters": params})
        i += spec.times
    rows.append({"block": "C4", "R": 1, "K": 1, "C": model.vocab_size, "S": 1,
                 "parameters": sum(p.numel() for p in model.decoder.parameters())})
    return rows
