"""A streaming LSTM RNN-Transducer (RNN-T) whose layers form named *modules* (seed 002, Table 1).

Structure (every name below is a module path a plugin can address, e.g. in ``module_replacing``)::

    RNNTModel
      encoder            StreamingEncoder: raw fbank (B, T, 80) -> (B, T', joint_dim)
        cmvn_mean, cmvn_std   buffers (global CMVN from the data's feature_mean/feature_std)
        (frame stacking: ``stack`` consecutive frames are concatenated, T' = T // stack)
        layers.0 .. layers.{N-1}   one unidirectional LSTM layer each (ResidualLSTM, an nn.LSTM)
        (time reduction: before layer ``reduce_at``, ``time_reduction`` consecutive outputs are concatenated)
        proj             Linear(encoder_hidden, joint_dim)
      predictor          Predictor: tokens (B, U) -> (B, U, joint_dim)
        embedding        Embedding(vocab_size, pred_embed)   (the blank id starts every sequence)
        layers.0 .. layers.{M-1}   one LSTM layer each (ResidualLSTM)
        proj             Linear(pred_hidden, joint_dim)
      joiner             Joiner: logits = out(tanh(enc + pred))
        out              Linear(joint_dim, vocab_size)

The encoder is causal (unidirectional LSTMs over stacked frames), hence streaming. Layers of equal width
have residual connections (``residual: true``). Each LSTM layer is its own ``nn.LSTM`` so module
replacing can pair, say, ``encoder.layers.0`` + ``encoder.layers.1`` of a teacher with ``encoder.layers.0``
of a student; layers of one stack share their width so any grouping is pairable.

Interface for decoding and export (sherpa-onnx NeMo-transducer style)::

    enc, enc_lengths = model.encode(features, lengths)       # (B, T', J), (B,)
    pred, state = model.predict(tokens, state=None)          # (B, U, J); state = (h, c), each (M, B, H_pred)
    logits = model.join(enc, pred)       # enc (..., J) and pred (..., J) broadcast -> logits (..., V)
    out = model(batch)   # {"logits": (B, T', U+1, V), "logit_lengths": (B,), "ctc_logits": (B, T', V)}

``join`` is ``joiner.out(tanh(enc + pred))``: pass ``enc[:, :, None]`` and ``pred[:, None]`` for the lattice,
or a single frame and a single prediction when decoding. Token convention: the blank is the LAST id
(``vocab_size - 1``); the prediction network starts from the blank.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from compressor.core.registry import Args
from compressor.families.asr.vocab import vocabulary_size

# Presets mirroring seed 002's Table 1. "paper" widths: encoder LSTMs 1024, prediction LSTMs 512, joint 512,
# and a time-reduction layer of factor 2 in the encoder (He et al. 2019's streaming RNN-T; seed 002 does not
# name it, but its parameter counts need it: without it every model of Table 1 is 4*1024*1024 = 4.19M short,
# the input weights of the one 2048-wide LSTM). The reduction sits at a module boundary (teacher layer 2 =
# student layer 1), so a student layer and the teacher layers it replaces see the same input.
# "cpu" widths are scaled down so the synthetic corpus trains in minutes on two cores (no time reduction).
PRESETS: dict[str, dict[str, Any]] = {
    "exp1_teacher": {"encoder_layers": 4, "pred_layers": 2, "reduce_at": 2},
    "exp1_student": {"encoder_layers": 2, "pred_layers": 1, "reduce_at": 1},
    "exp2_teacher": {"encoder_layers": 6, "pred_layers": 2, "reduce_at": 2},
    "exp2_student": {"encoder_layers": 3, "pred_layers": 1, "reduce_at": 1},
}
#: Table 1's parameter counts (millions) at ``size: paper`` with a 1024-token output (1023 word pieces + blank).
TABLE1_PARAMETERS_M: dict[str, float] = {"exp1_teacher": 40.61, "exp1_student": 21.71, "exp2_teacher": 57.4,
                                         "exp2_student": 30.11}
SIZES: dict[str, dict[str, int]] = {
    "paper": {"encoder_hidden": 1024, "pred_hidden": 512, "pred_embed": 512, "joint_dim": 512,
              "time_reduction": 2},
    "cpu": {"encoder_hidden": 192, "pred_hidden": 96, "pred_embed": 64, "joint_dim": 128},
    "tiny": {"encoder_hidden": 32, "pred_hidden": 16, "pred_embed": 16, "joint_dim": 24},
}


class RNNTArgs(Args):
    """Arguments of ``rnnt_lstm``: ``preset`` fills layer counts, ``size`` widths; explicit keys win."""

    preset: Literal["exp1_teacher", "exp1_student", "exp2_teacher", "exp2_student"] | None = Field(
        default=None, description="seed 002 Table 1 layer counts (exp1: 4->2 encoder, 2->1 prediction; "
                                  "exp2: 6->3, 2->1)")
    size: Literal["paper", "cpu", "tiny"] = Field(
        default="cpu", description="widths: paper = 1024/512/512 (GPU), cpu = 192/96/128, tiny = tests")
    encoder_layers: int | None = Field(default=None, ge=1)
    pred_layers: int | None = Field(default=None, ge=1)
    encoder_hidden: int | None = Field(default=None, ge=1)
    pred_hidden: int | None = Field(default=None, ge=1)
    pred_embed: int | None = Field(default=None, ge=1)
    joint_dim: int | None = Field(default=None, ge=1)
    stack: int = Field(default=3, ge=1, description="frames stacked (and subsampled) before the encoder")
    time_reduction: int | None = Field(default=None, ge=1, description="outputs concatenated (and subsampled) "
                                       "inside the encoder; default: 2 at paper size, else 1 (none)")
    reduce_at: int | None = Field(default=None, ge=1, description="the encoder layer whose input is reduced; "
                                  "default: the preset's, else 1")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="dropout between LSTM layers")
    residual: bool = Field(default=True, description="residual connections around LSTM layers of equal width")
    feature_dim: int | None = Field(default=None, ge=1, description="default: the data's feature_dim")
    vocab_size: int | None = Field(default=None, ge=2, description="default: the data's vocab_size")

    @model_validator(mode="after")
    def _reduction_inside_encoder(self) -> RNNTArgs:
        self.resolved()
        return self

    def resolved(self) -> dict[str, int | float]:
        out: dict[str, Any] = {"encoder_layers": 2, "pred_layers": 1}
        out.update(SIZES[self.size])
        if self.preset:
            out.update(PRESETS[self.preset])
        out.setdefault("time_reduction", 1)
        out.setdefault("reduce_at", 1)
        for key in ("encoder_layers", "pred_layers", "encoder_hidden", "pred_hidden", "pred_embed",
                    "joint_dim", "time_reduction", "reduce_at"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if out["time_reduction"] > 1 and out["reduce_at"] >= out["encoder_layers"]:
            raise ValueError(f"reduce_at ({out['reduce_at']}) must name an encoder layer after the first "
                             f"(1 .. {out['encoder_layers'] - 1})")
        out["stack"] = self.stack
        out["dropout"] = self.dropout
        out["residual"] = self.residual
        return out


class ResidualLSTM(nn.LSTM):
    """A one-layer unidirectional ``nn.LSTM`` that adds its input to its output when the widths match.

    Stacks of plain LSTMs deeper than two layers barely train from scratch on a small corpus (the 4-layer
    teacher of Table 1 stays on the language-model plateau for thousands of steps); residual connections fix
    that. It *is* an ``nn.LSTM`` (same parameters and checkpoint keys, same ``forward(x, (h, c))`` signature),
    so exporters that drive the layers step by step get the residual too.
    """

    def __init__(self, input_size: int, hidden_size: int, residual: bool = True) -> None:
        super().__init__(input_size, hidden_size, batch_first=True)
        self.residual = residual and input_size == hidden_size

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = super().forward(input, hx)
        return (out + input if self.residual else out), state


def lengths_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool, True at valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class StreamingEncoder(nn.Module):
    """Global CMVN -> frame stacking (subsampling by ``stack``) -> unidirectional LSTMs -> projection.

    With ``time_reduction`` r > 1, the input of layer ``reduce_at`` is r consecutive outputs of the layer before,
    concatenated (a further subsampling by r; that layer is r times wider).
    """

    def __init__(self, feature_dim: int, hidden: int, num_layers: int, out_dim: int, stack: int = 3,
                 dropout: float = 0.0, mean: list[float] | None = None,
                 std: list[float] | None = None, residual: bool = True, time_reduction: int = 1,
                 reduce_at: int = 1) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.stack = stack
        self.time_reduction = time_reduction
        self.reduce_at = reduce_at
        self.register_buffer("cmvn_mean", torch.tensor(mean, dtype=torch.float32) if mean is not None
                             else torch.zeros(feature_dim))
        self.register_buffer("cmvn_std", torch.tensor(std, dtype=torch.float32) if std is not None
                             else torch.ones(feature_dim))
        dims = [feature_dim * stack] + [hidden] * num_layers
        if time_reduction > 1:
            dims[reduce_at] = hidden * time_reduction
        self.layers = nn.ModuleList(ResidualLSTM(dims[i], hidden, residual) for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, out_dim)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        out = torch.div(lengths, self.stack, rounding_mode="floor").clamp_min(1)
        if self.time_reduction > 1:
            out = torch.div(out, self.time_reduction, rounding_mode="floor").clamp_min(1)
        return out

    @staticmethod
    def concat_frames(x: torch.Tensor, n: int) -> torch.Tensor:
        """(B, T, F) -> (B, T // n, n * F); a tail shorter than ``n`` frames is dropped (one frame is kept)."""
        b, t, f = x.shape
        if t < n:  # keep at least one output frame
            x = torch.nn.functional.pad(x, (0, 0, 0, n - t))
            t = n
        t_out = t // n
        return x[:, : t_out * n].reshape(b, t_out, n * f)

    def stack_frames(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, T // stack, stack * F); a tail shorter than ``stack`` frames is dropped."""
        return self.concat_frames(x, self.stack)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (features - self.cmvn_mean) / self.cmvn_std
        x = self.stack_frames(x)
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            if self.time_reduction > 1 and i == self.reduce_at:
                x = self.concat_frames(x, self.time_reduction)
            x, _ = layer(x)
        return self.proj(x), self.output_lengths(lengths)


class Predictor(nn.Module):
    """Prediction network: Embedding -> LSTM layers -> Linear; the LSTM state is explicit (h, c)."""

    def __init__(self, vocab_size: int, embed: int, hidden: int, num_layers: int, out_dim: int,
                 dropout: float = 0.0, residual: bool = True) -> None:
        super().__init__()
        self.hidden = hidden
        self.embedding = nn.Embedding(vocab_size, embed)
        dims = [embed] + [hidden] * num_layers
        self.layers = nn.ModuleList(ResidualLSTM(dims[i], hidden, residual) for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, out_dim)

    def forward(self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """tokens (B, U) -> (B, U, out_dim), state ``(h, c)`` each (num_layers, B, hidden)."""
        x = self.embedding(tokens)
        hs, cs = [], []
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            layer_state = None if state is None else (state[0][i : i + 1], state[1][i : i + 1])
            x, (h, c) = layer(x, layer_state)
            hs.append(h)
            cs.append(c)
        return self.proj(x), (torch.cat(hs, 0), torch.cat(cs, 0))


class Joiner(nn.Module):
    """logits = out(tanh(enc + pred)); enc and pred are already projected to ``joint_dim``."""

    def __init__(self, joint_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.out = nn.Linear(joint_dim, vocab_size)

    def forward(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(enc + pred))


class RNNTModel(nn.Module):
    """Streaming LSTM RNN-T: ``encoder``, ``predictor``, ``joiner`` (see the module docstring)."""

    def __init__(self, feature_dim: int, vocab_size: int, encoder_layers: int = 2, pred_layers: int = 1,
                 encoder_hidden: int = 192, pred_hidden: int = 96, pred_embed: int = 64, joint_dim: int = 128,
                 stack: int = 3, dropout: float = 0.0, feature_mean: list[float] | None = None,
                 feature_std: list[float] | None = None, residual: bool = True, time_reduction: int = 1,
                 reduce_at: int = 1) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.blank_id = vocab_size - 1
        self.encoder = StreamingEncoder(feature_dim, encoder_hidden, encoder_layers, joint_dim, stack,
                                        dropout, feature_mean, feature_std, residual, time_reduction, reduce_at)
        self.predictor = Predictor(vocab_size, pred_embed, pred_hidden, pred_layers, joint_dim, dropout,
                                   residual)
        self.joiner = Joiner(joint_dim, vocab_size)

    # -- decoding / export interface -------------------------------------------------------------
    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw fbank (B, T, F) and lengths (B,) -> encoder output (B, T', J) and its lengths (B,)."""
        return self.encoder(features, lengths)

    def predict(self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Tokens (B, U) -> prediction output (B, U, J) and LSTM state ``(h, c)``, each (M, B, H_pred)."""
        return self.predictor(tokens, state)

    def join(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Joint network on broadcastable ``enc`` and ``pred`` (last dim J) -> logits (..., V)."""
        return self.joiner(enc, pred)

    def initial_state(self, batch_size: int, device: torch.device | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero prediction-network state (h, c), each (M, B, H_pred)."""
        shape = (len(self.predictor.layers), batch_size, self.predictor.hidden)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    # -- training ---------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The full RNN-T lattice: logits (B, T', U+1, V) over the targets ``batch["tokens"]``; also
        ``ctc_logits`` (B, T', V) = join(enc, 0) for an optional CTC auxiliary loss."""
        enc, enc_lengths = self.encode(batch["features"], batch["feature_lengths"])
        tokens = batch["tokens"]
        blank = torch.full((tokens.shape[0], 1), self.blank_id, dtype=tokens.dtype, device=tokens.device)
        pred, _ = self.predict(torch.cat([blank, tokens], dim=1))
        logits = self.join(enc[:, :, None, :], pred[:, None, :, :])
        # The joint network with a zero prediction vector, per frame: logits for the task's optional CTC
        # auxiliary loss (no extra parameters; not part of the exported model).
        ctc_logits = self.join(enc, torch.zeros_like(enc))
        return {"logits": logits, "logit_lengths": enc_lengths, "ctc_logits": ctc_logits}


def build_rnnt(args: RNNTArgs, info: dict[str, Any] | None = None) -> RNNTModel:
    """Streaming LSTM RNN-T (encoder + prediction + joint network) with seed 002's Table 1 presets."""
    info = info or {}
    feature_dim = args.feature_dim or info.get("feature_dim") or 80
    vocab_size = vocabulary_size("rnnt_lstm", args.vocab_size, info)
    mean, std = info.get("feature_mean"), info.get("feature_std")
    if mean is not None and len(mean) != feature_dim:
        mean, std = None, None
    return RNNTModel(int(feature_dim), int(vocab_size), **args.resolved(), feature_mean=mean,  # type: ignore[arg-type]
                     feature_std=std)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
