"""ONNX graphs in the layouts sherpa-onnx loads, and writing them with their metadata.

Layouts (checked against sherpa-onnx 2.x ``offline-transducer-nemo-model.cc``,
``offline-transducer-greedy-search-nemo-decoder.cc`` and ``offline-nemo-enc-dec-ctc-model.cc``; sherpa-onnx
binds inputs and outputs by position, the names follow NeMo's export):

* RNN-T (``model_type="nemo_transducer"``)
  - ``encoder.onnx``: ``audio_signal`` (N, 80, T) float, ``length`` (N,) int64 ->
    ``outputs`` (N, D, T') float, ``encoded_lengths`` (N,) int64. Metadata ``vocab_size`` (without the
    blank), ``subsampling_factor``, ``normalize_type`` (empty: global CMVN is inside the model;
    ``per_feature`` when the data normalises each utterance, which sherpa-onnx then does too),
    ``pred_rnn_layers``, ``pred_hidden``, ``feat_dim``.
  - ``decoder.onnx`` (one step of the LSTM prediction network): ``targets`` (N, 1) int32, ``target_length``
    (N,) int32, ``states.1`` h (L, N, H), ``states.2`` c (L, N, H) -> ``outputs`` (N, D, 1),
    ``prednet_lengths`` (N,), ``states_next.1``, ``states_next.2``.
  - ``joiner.onnx``: ``encoder_outputs`` (N, D, T), ``decoder_outputs`` (N, D, U) -> ``outputs`` (N, T, U, V).
* Streaming RNN-T (``OnlineRecognizer.from_transducer(..., model_type="nemo_transducer")``):
  ``encoder.streaming.onnx``: one chunk ``audio_signal`` (N, 80, W), ``length`` (N,), ``cache_last_channel``
  (N, L, 1, H) = the encoder LSTMs' h, ``cache_last_time`` (N, L, 1, H) = their c, ``cache_last_channel_len``
  (N,) -> ``outputs`` (N, D, W / stack), lengths, the next three states. Metadata as the offline encoder plus
  ``window_size`` = ``chunk_shift`` = W and ``cache_last_{channel,time}_dim{1,2,3}`` = (L, 1, H); the decoder
  and joiner files are shared with the offline export.
* CTC (``from_nemo_ctc``): ``model.onnx``: ``audio_signal`` (N, 80, T), ``length`` (N,) int64 ->
  ``logprobs`` (N, T', V), ``logprobs_length`` (N,). Metadata ``vocab_size`` (with the blank),
  ``subsampling_factor``, ``normalize_type``.
* Classifier: ``model.onnx``: ``features`` (N, T, 80), ``feature_lengths`` (N,) int64 -> ``logits`` (N, C).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from compressor.errors import UserError


# --------------------------------------------------------------------------------------------------
# Wrappers: the model's own modules, rearranged into sherpa-onnx's tensor layouts
# --------------------------------------------------------------------------------------------------
class RNNTEncoderGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio_signal: torch.Tensor, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc, enc_len = self.model.encode(audio_signal.transpose(1, 2), length)
        return enc.transpose(1, 2), enc_len.to(torch.int64)


class RNNTDecoderGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, targets: torch.Tensor, target_length: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        pred, (h2, c2) = self.model.predict(targets.to(torch.int64), (h, c))
        return pred.transpose(1, 2), target_length + 0, h2, c2


class RNNTJoinerGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, encoder_outputs: torch.Tensor, decoder_outputs: torch.Tensor) -> torch.Tensor:
        enc = encoder_outputs.transpose(1, 2)[:, :, None, :]
        dec = decoder_outputs.transpose(1, 2)[:, None, :, :]
        return self.model.join(enc, dec)


class RNNTStreamingEncoderGraph(nn.Module):
    """One chunk of the causal LSTM encoder; the LSTM states travel in NeMo's cache slots.

    sherpa-onnx's online NeMo transducer passes three encoder states: ``cache_last_channel`` and
    ``cache_last_time`` (float, batch first) and ``cache_last_channel_len`` (int64). Here they hold the
    encoder LSTMs' ``h`` and ``c`` as (B, layers, 1, hidden) and a chunk counter.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, audio_signal: torch.Tensor, length: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                count: torch.Tensor) -> tuple[torch.Tensor, ...]:
        enc = self.encoder
        x = (audio_signal.transpose(1, 2) - enc.cmvn_mean) / enc.cmvn_std
        x = enc.stack_frames(x)
        hs, cs = [], []
        for i, layer in enumerate(enc.layers):
            state = (h[:, i, 0].unsqueeze(0).contiguous(), c[:, i, 0].unsqueeze(0).contiguous())
            x, (h1, c1) = layer(x, state)
            hs.append(h1[0])
            cs.append(c1[0])
        out = enc.proj(x)
        return (out.transpose(1, 2), enc.output_lengths(length).to(torch.int64),
                torch.stack(hs, 1).unsqueeze(2), torch.stack(cs, 1).unsqueeze(2), count + 1)


def supports_streaming(model: nn.Module) -> bool:
    """A causal encoder built like ``rnnt_lstm``'s: CMVN, frame stacking, unidirectional LSTMs, projection."""
    enc = getattr(model, "encoder", None)
    layers = getattr(enc, "layers", None)
    needed = ("stack_frames", "proj", "cmvn_mean", "cmvn_std", "output_lengths")
    if enc is None or layers is None or not all(hasattr(enc, a) for a in needed):
        return False
    if not all(isinstance(m, nn.LSTM) and not m.bidirectional and m.num_layers == 1 for m in layers):
        return False
    return len({m.hidden_size for m in layers}) == 1


def rnnt_streaming_graph(model: nn.Module, feature_dim: int, chunk_frames: int) -> GraphFile:
    enc = model.encoder
    stack = int(enc.stack)
    layers, hidden = len(enc.layers), int(enc.layers[0].hidden_size)
    w = chunk_frames
    return GraphFile(
        "encoder.streaming.onnx", RNNTStreamingEncoderGraph(model),
        (torch.randn(2, feature_dim, w), torch.tensor([w, w], dtype=torch.int64),
         torch.zeros(2, layers, 1, hidden), torch.zeros(2, layers, 1, hidden),
         torch.zeros(2, dtype=torch.int64)),
        ["audio_signal", "length", "cache_last_channel", "cache_last_time", "cache_last_channel_len"],
        ["outputs", "encoded_lengths", "cache_last_channel_next", "cache_last_time_next",
         "cache_last_channel_len_next"],
        {"audio_signal": {0: "N"}, "length": {0: "N"}, "cache_last_channel": {0: "N"},
         "cache_last_time": {0: "N"}, "cache_last_channel_len": {0: "N"}, "outputs": {0: "N"},
         "encoded_lengths": {0: "N"}, "cache_last_channel_next": {0: "N"}, "cache_last_time_next": {0: "N"},
         "cache_last_channel_len_next": {0: "N"}},
        {"vocab_size": str(int(model.vocab_size) - 1), "subsampling_factor": str(stack),
         "window_size": str(w), "chunk_shift": str(w), "normalize_type": "",
         "pred_rnn_layers": str(len(model.predictor.layers)), "pred_hidden": str(int(model.predictor.hidden)),
         "cache_last_channel_dim1": str(layers), "cache_last_channel_dim2": "1",
         "cache_last_channel_dim3": str(hidden), "cache_last_time_dim1": str(layers),
         "cache_last_time_dim2": "1", "cache_last_time_dim3": str(hidden), "feat_dim": str(feature_dim),
         "model_type": "EncDecRNNTBPEModel",
         "comment": "exported by compressor (streaming LSTM RNN-T chunk)"})


class CTCGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio_signal: torch.Tensor, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_export(audio_signal, length), self.model.output_lengths(length)


class ClassifierGraph(nn.Module):
    def __init__(self, model: nn.Module, feature_key: str = "features") -> None:
        super().__init__()
        self.model = model
        self.feature_key = feature_key

    def forward(self, features: torch.Tensor, feature_lengths: torch.Tensor) -> torch.Tensor:
        return self.model({self.feature_key: features, "feature_lengths": feature_lengths})["logits"]


# --------------------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------------------
def model_family(model: nn.Module, model_ref: dict[str, Any], task_name: str) -> str:
    """``rnnt``, ``ctc`` or ``classifier``; a clear error for anything else."""
    if all(hasattr(model, m) for m in ("encode", "predict", "join")):
        return "rnnt"
    if hasattr(model, "forward_export") and hasattr(model, "output_lengths"):
        return "ctc"
    if task_name == "classification":
        return "classifier"
    raise UserError(
        f"the onnx exporter does not know the model family of "
        f"'{model_ref.get('name', type(model).__name__)}' (task '{task_name}'): it exports RNN-T models "
        f"(encode/predict/join), CTC models (forward_export) and classifiers (task 'classification')")


@dataclass
class GraphFile:
    """One ONNX file: its wrapper, example inputs, names, dynamic axes and metadata."""

    name: str
    module: nn.Module
    example: tuple[torch.Tensor, ...]
    inputs: list[str]
    outputs: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    metadata: dict[str, str] = field(default_factory=dict)


def rnnt_graphs(model: nn.Module, feature_dim: int, normalize_type: str = "") -> list[GraphFile]:
    pred_layers = len(model.predictor.layers)
    pred_hidden = int(model.predictor.hidden)
    joint_dim = int(model.joiner.out.in_features)
    vocab = int(model.vocab_size)
    stack = int(getattr(model.encoder, "stack", 1))
    t = 37 * stack
    enc = GraphFile(
        "encoder.onnx", RNNTEncoderGraph(model),
        (torch.randn(2, feature_dim, t), torch.tensor([t, t - 5], dtype=torch.int64)),
        ["audio_signal", "length"], ["outputs", "encoded_lengths"],
        {"audio_signal": {0: "N", 2: "T"}, "length": {0: "N"}, "outputs": {0: "N", 2: "T_out"},
         "encoded_lengths": {0: "N"}},
        {"vocab_size": str(vocab - 1), "subsampling_factor": str(stack), "normalize_type": normalize_type,
         "pred_rnn_layers": str(pred_layers), "pred_hidden": str(pred_hidden), "feat_dim": str(feature_dim),
         "model_type": "EncDecRNNTBPEModel", "comment": "exported by compressor (streaming LSTM RNN-T)"})
    dec = GraphFile(
        "decoder.onnx", RNNTDecoderGraph(model),
        (torch.zeros(2, 1, dtype=torch.int32), torch.ones(2, dtype=torch.int32),
         torch.zeros(pred_layers, 2, pred_hidden), torch.zeros(pred_layers, 2, pred_hidden)),
        ["targets", "target_length", "states.1", "states.2"],
        ["outputs", "prednet_lengths", "states_next.1", "states_next.2"],
        {"targets": {0: "N"}, "target_length": {0: "N"}, "states.1": {1: "N"}, "states.2": {1: "N"},
         "outputs": {0: "N"}, "prednet_lengths": {0: "N"}, "states_next.1": {1: "N"},
         "states_next.2": {1: "N"}})
    join = GraphFile(
        "joiner.onnx", RNNTJoinerGraph(model),
        (torch.randn(2, joint_dim, 3), torch.randn(2, joint_dim, 1)),
        ["encoder_outputs", "decoder_outputs"], ["outputs"],
        {"encoder_outputs": {0: "N", 2: "T"}, "decoder_outputs": {0: "N", 2: "U"},
         "outputs": {0: "N", 1: "T", 2: "U"}})
    return [enc, dec, join]


def ctc_graphs(model: nn.Module, feature_dim: int, normalize_type: str = "") -> list[GraphFile]:
    t = 101
    return [GraphFile(
        "model.onnx", CTCGraph(model),
        (torch.randn(2, feature_dim, t), torch.tensor([t, t - 9], dtype=torch.int64)),
        ["audio_signal", "length"], ["logprobs", "logprobs_length"],
        {"audio_signal": {0: "N", 2: "T"}, "length": {0: "N"}, "logprobs": {0: "N", 1: "T_out"},
         "logprobs_length": {0: "N"}},
        {"vocab_size": str(int(model.vocab_size)), "subsampling_factor": str(int(model.subsampling_factor)),
         "normalize_type": normalize_type, "feat_dim": str(feature_dim), "model_type": "EncDecCTCModelBPE",
         "comment": "exported by compressor (QuartzNet-like CTC)"})]


def classifier_graphs(model: nn.Module, feature_dim: int, labels: Sequence[str], normalize_type: str = ""
                      ) -> list[GraphFile]:
    t = 53
    return [GraphFile(
        "model.onnx", ClassifierGraph(model),
        (torch.randn(2, t, feature_dim), torch.tensor([t, t - 7], dtype=torch.int64)),
        ["features", "feature_lengths"], ["logits"],
        {"features": {0: "N", 1: "T"}, "feature_lengths": {0: "N"}, "logits": {0: "N"}},
        {"num_classes": str(len(labels)), "labels": ",".join(labels), "feat_dim": str(feature_dim),
         "normalize_type": normalize_type,
         "comment": "exported by compressor (utterance classifier)"})]


def write_graph(graph: GraphFile, out_dir: Path, opset: int) -> Path:
    """torch.onnx.export (TorchScript-based, ``dynamo=False``: keeps LSTM time axes dynamic) + metadata."""
    path = out_dir / graph.name
    graph.module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph.module, graph.example, str(path), input_names=graph.inputs,
                              output_names=graph.outputs, dynamic_axes=graph.dynamic_axes,
                              opset_version=opset, dynamo=False, do_constant_folding=True)
    except Exception as e:  # an op ONNX cannot express, an unsupported construct
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot export {graph.name} to ONNX (opset {opset}): {type(e).__name__}: {first}"
                        ) from None
    proto = onnx.load(str(path))
    got = [i.name for i in proto.graph.input]
    if got != graph.inputs:
        raise UserError(f"{graph.name}: the exported graph has inputs {got}, expected {graph.inputs} "
                        f"(an input the model does not use was dropped)")
    if graph.metadata:
        del proto.metadata_props[:]
        for key, value in graph.metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(path))
    return path


def write_tokens(tokens: Sequence[str], path: Path) -> Path:
    """sherpa-onnx ``tokens.txt``: ``symbol id`` per line, the blank ``<blk>`` last."""
    lines = []
    for i, tok in enumerate(tokens):
        if not tok or any(ch.isspace() for ch in tok):
            raise UserError(f"token {i} ({tok!r}) is empty or contains whitespace: sherpa-onnx's tokens.txt "
                            f"cannot hold it (use '▁' or '<space>' for word boundaries)")
        lines.append(f"{tok} {i}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
