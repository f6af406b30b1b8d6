"""``compressor.data.features.fbank`` against sherpa-onnx's own C++ front end, in the real runtime.

sherpa-onnx's Python API does not hand out its features, so these tests read them back through tiny
"probe" models that sherpa-onnx loads as NeMo models and whose transcripts spell out the features they
were given (each value quantized to one token):

* NeMo transducer (``model_type="nemo_transducer"``, the project's blank-last convention): the encoder
  passes 10 feature dimensions through; the prediction network turns the last emitted token into a one-hot
  "next slot"; the joiner emits ``slot * L + quantized value``. sherpa's greedy search emits up to 10
  symbols per frame, so one recognizer reads 10 dimensions of every frame.
* NeMo CTC (``from_nemo_ctc``): one dimension per frame, token sets alternating between even and odd
  frames so CTC never merges repeats.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from compressor.data.features import fbank, per_feature_normalize

sherpa_onnx = pytest.importorskip("sherpa_onnx")
onnx = pytest.importorskip("onnx")

LO, HI, LEVELS, SLOTS = -30.0, 20.0, 2048, 10
STEP = (HI - LO) / (LEVELS - 1)
TOL = STEP / 2 + 1e-3  # quantization error of the probe
torch.set_num_threads(1)


def _quantize(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.round((x - LO) / STEP), 0, LEVELS - 1)


def _wave(seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    rng = np.random.RandomState(0)
    x = 0.2 * np.sin(2 * math.pi * 220 * t) * (1 + np.sin(2 * math.pi * 3 * t)) + 0.02 * rng.randn(len(t))
    return x.astype(np.float32)


def _export(
    module: nn.Module,
    example: tuple,
    path: Path,
    inputs: list[str],
    outputs: list[str],
    axes: dict,
    meta: dict[str, str] | None = None,
) -> str:
    torch.onnx.export(
        module,
        example,
        str(path),
        input_names=inputs,
        output_names=outputs,
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    if meta:
        proto = onnx.load(str(path))
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(path))
    return str(path)


# -- NeMo transducer probe ------------------------------------------------------------------------
VOCAB = SLOTS * LEVELS + 1
BLANK = VOCAB - 1


class _Encoder(nn.Module):
    def __init__(self, first: int) -> None:
        super().__init__()
        self.first = first

    def forward(self, audio_signal: torch.Tensor, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return audio_signal[:, self.first : self.first + SLOTS, :], length


class _Decoder(nn.Module):
    def forward(
        self, targets: torch.Tensor, target_length: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        y = targets.to(torch.int64)[:, 0]
        nxt = (torch.div(y, LEVELS, rounding_mode="floor") + 1) % SLOTS
        slot = torch.where(y == BLANK, torch.zeros_like(y), nxt)
        onehot = (slot[:, None] == torch.arange(SLOTS)[None, :]).float()
        return onehot[:, :, None], target_length + 0, h + 0, c + 0


class _Joiner(nn.Module):
    def forward(self, encoder_outputs: torch.Tensor, decoder_outputs: torch.Tensor) -> torch.Tensor:
        enc = encoder_outputs.transpose(1, 2)[:, :, None, :]
        dec = decoder_outputs.transpose(1, 2)[:, None, :, :]
        value = (enc * dec).sum(-1)
        slot = (dec * torch.arange(SLOTS, dtype=enc.dtype)).sum(-1)
        token = slot * LEVELS + _quantize(value)
        return (token[..., None] == torch.arange(VOCAB, dtype=enc.dtype)).to(enc.dtype) * 30.0


def sherpa_transducer_features(wave: np.ndarray, d: Path) -> np.ndarray:
    meta = {
        "vocab_size": str(VOCAB - 1),
        "subsampling_factor": "1",
        "normalize_type": "",
        "pred_rnn_layers": "1",
        "pred_hidden": "1",
        "feat_dim": "80",
        "model_type": "EncDecRNNTBPEModel",
    }
    dec = _export(
        _Decoder(),
        (
            torch.zeros(1, 1, dtype=torch.int32),
            torch.ones(1, dtype=torch.int32),
            torch.zeros(1, 1, 1),
            torch.zeros(1, 1, 1),
        ),
        d / "decoder.onnx",
        ["targets", "target_length", "states.1", "states.2"],
        ["outputs", "prednet_lengths", "states_next.1", "states_next.2"],
        {
            "targets": {0: "N"},
            "target_length": {0: "N"},
            "states.1": {1: "N"},
            "states.2": {1: "N"},
            "outputs": {0: "N"},
            "prednet_lengths": {0: "N"},
            "states_next.1": {1: "N"},
            "states_next.2": {1: "N"},
        },
    )
    join = _export(
        _Joiner(),
        (torch.randn(1, SLOTS, 1), torch.randn(1, SLOTS, 1)),
        d / "joiner.onnx",
        ["encoder_outputs", "decoder_outputs"],
        ["outputs"],
        {
            "encoder_outputs": {0: "N", 2: "T"},
            "decoder_outputs": {0: "N", 2: "U"},
            "outputs": {0: "N", 1: "T", 2: "U"},
        },
    )
    tokens = d / "tokens.txt"
    tokens.write_text(
        "".join(f"s{i // LEVELS}q{i % LEVELS} {i}\n" for i in range(VOCAB - 1)) + f"<blk> {BLANK}\n"
    )
    columns = []
    for first in range(0, 80, SLOTS):
        enc = _export(
            _Encoder(first),
            (torch.randn(1, 80, 20), torch.tensor([20])),
            d / f"encoder{first}.onnx",
            ["audio_signal", "length"],
            ["outputs", "encoded_lengths"],
            {
                "audio_signal": {0: "N", 2: "T"},
                "length": {0: "N"},
                "outputs": {0: "N", 2: "T2"},
                "encoded_lengths": {0: "N"},
            },
            meta,
        )
        rec = sherpa_onnx.OfflineRecognizer.from_transducer(
            encoder=enc, decoder=dec, joiner=join, tokens=str(tokens), model_type="nemo_transducer"
        )
        stream = rec.create_stream()
        stream.accept_waveform(16000, wave)
        rec.decode_stream(stream)
        slots = [int(t[1:].split("q")[0]) for t in stream.result.tokens]
        assert slots == list(range(SLOTS)) * (len(slots) // SLOTS), "probe lost its place"
        values = [LO + STEP * int(t.split("q")[1]) for t in stream.result.tokens]
        columns.append(np.asarray(values, dtype=np.float32).reshape(-1, SLOTS))
    return np.concatenate(columns, axis=1)


# -- NeMo CTC probe -------------------------------------------------------------------------------
class _CTCProbe(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, audio_signal: torch.Tensor, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = audio_signal[:, self.dim, :]
        parity = torch.arange(x.shape[1], dtype=x.dtype) % 2
        token = _quantize(x) + parity * LEVELS
        logits = (token[..., None] == torch.arange(2 * LEVELS + 1, dtype=x.dtype)).to(x.dtype) * 30.0
        return logits, length


def sherpa_ctc_features(wave: np.ndarray, dims: list[int], d: Path, normalize_type: str = "") -> np.ndarray:
    tokens = d / "ctc_tokens.txt"
    tokens.write_text("".join(f"q{i} {i}\n" for i in range(2 * LEVELS)) + f"<blk> {2 * LEVELS}\n")
    meta = {
        "vocab_size": str(2 * LEVELS + 1),
        "subsampling_factor": "1",
        "normalize_type": normalize_type,
        "feat_dim": "80",
        "model_type": "EncDecCTCModelBPE",
    }
    columns = []
    for dim in dims:
        model = _export(
            _CTCProbe(dim),
            (torch.randn(1, 80, 20), torch.tensor([20])),
            d / f"ctc{dim}.onnx",
            ["audio_signal", "length"],
            ["logprobs", "logprobs_length"],
            {
                "audio_signal": {0: "N", 2: "T"},
                "length": {0: "N"},
                "logprobs": {0: "N", 1: "T"},
                "logprobs_length": {0: "N"},
            },
            meta,
        )
        rec = sherpa_onnx.OfflineRecognizer.from_nemo_ctc(model=model, tokens=str(tokens))
        stream = rec.create_stream()
        stream.accept_waveform(16000, wave)
        rec.decode_stream(stream)
        columns.append([LO + STEP * (int(t[1:]) % LEVELS) for t in stream.result.tokens])
    return np.asarray(columns, dtype=np.float32).T


@pytest.mark.filterwarnings("ignore")
def test_nemo_frontend_equals_sherpa_nemo_transducer(tmp_path: Path) -> None:
    wave = _wave(0.5)
    ref = sherpa_transducer_features(wave, tmp_path)
    ours = fbank(torch.from_numpy(wave), 16000, "nemo").numpy()
    assert ref.shape == ours.shape == (50, 80)
    assert np.abs(ref - ours).max() <= TOL
    # the probe can tell front ends apart: the kaldi and CTC ones are far off
    assert np.abs(ref - fbank(torch.from_numpy(wave), 16000, "kaldi").numpy()).max() > 0.5
    assert np.abs(ref - fbank(torch.from_numpy(wave), 16000, "nemo_ctc").numpy()).max() > 0.5


@pytest.mark.filterwarnings("ignore")
def test_nemo_ctc_frontend_equals_sherpa_nemo_ctc(tmp_path: Path) -> None:
    wave = _wave(0.5)
    dims = [0, 13, 41, 79]
    ref = sherpa_ctc_features(wave, dims, tmp_path)
    ours = fbank(torch.from_numpy(wave), 16000, "nemo_ctc").numpy()[:, dims]
    assert ref.shape == ours.shape
    assert np.abs(ref - ours).max() <= TOL


@pytest.mark.filterwarnings("ignore")
def test_per_feature_normalization_equals_sherpa(tmp_path: Path) -> None:
    wave = _wave(0.5)
    # mel bins with energy: in near-empty bins (log-mel ~ -13) both float32 FFTs differ by rounding noise,
    # which normalisation by a small per-utterance std magnifies
    dims = [20, 50, 79]
    ref = sherpa_ctc_features(wave, dims, tmp_path, normalize_type="per_feature")
    ours = per_feature_normalize(fbank(torch.from_numpy(wave), 16000, "nemo_ctc")).numpy()[:, dims]
    assert ref.shape == ours.shape
    assert np.abs(ref - ours).max() <= TOL
    assert np.abs(ours).max() > 1  # normalised values, not a degenerate constant
