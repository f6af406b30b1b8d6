"""Parity checks of an export: onnx.checker, onnxruntime vs PyTorch, sherpa-onnx vs PyTorch transcripts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from compressor.errors import UserError
from compressor.export.graphs import GraphFile


def check_onnx(path: Path) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise UserError(f"{path.name} fails onnx.checker: {str(e).splitlines()[0]}") from None


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def max_abs_diff(graph: GraphFile, sess: ort.InferenceSession, inputs: Sequence[torch.Tensor]) -> float:
    """Largest |onnxruntime - PyTorch| over all outputs of ``graph`` for ``inputs``."""
    with torch.no_grad():
        ref = graph.module(*inputs)
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = sess.run(None, {name: t.numpy() for name, t in zip(graph.inputs, inputs)})
    worst = 0.0
    for r, g in zip(ref, got):
        r = r.numpy()
        if r.shape != g.shape:
            raise UserError(f"{graph.name}: onnxruntime output shape {g.shape} != PyTorch {r.shape} "
                            f"for inputs of shapes {[tuple(t.shape) for t in inputs]}")
        if r.size:
            worst = max(worst, float(np.abs(r.astype(np.float64) - g.astype(np.float64)).max()))
    return worst


def parity_inputs(family: str, graphs: list[GraphFile], batches: list[dict[str, Any]], model: nn.Module,
                  seed: int = 0) -> dict[str, list[tuple[torch.Tensor, ...]]]:
    """Inputs per ONNX file built from real batches (several batch sizes and lengths)."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list[tuple[torch.Tensor, ...]]] = {gr.name: [] for gr in graphs}
    for batch in batches:
        feats = batch["features"].float()
        lens = batch["feature_lengths"].to(torch.int64)
        if family == "classifier":
            out["model.onnx"].append((feats, lens))
            continue
        x = feats.transpose(1, 2).contiguous()
        if family == "ctc":
            out["model.onnx"].append((x, lens))
            continue
        out["encoder.onnx"].append((x, lens))
        with torch.no_grad():
            enc, _ = model.encode(feats, lens)
        n = feats.shape[0]
        layers, hidden = len(model.predictor.layers), int(model.predictor.hidden)
        tokens = torch.randint(0, int(model.vocab_size), (n, 1), generator=g, dtype=torch.int32)
        h = torch.randn(layers, n, hidden, generator=g) * 0.5
        c = torch.randn(layers, n, hidden, generator=g) * 0.5
        out["decoder.onnx"].append((tokens, torch.ones(n, dtype=torch.int32), h, c))
        with torch.no_grad():
            pred, _ = model.predict(tokens.long(), (h, c))
        out["joiner.onnx"].append((enc.transpose(1, 2).contiguous(), pred.transpose(1, 2).contiguous()))
    return out


# --------------------------------------------------------------------------------------------------
# Reference decoding in PyTorch, with the rules sherpa-onnx's greedy search uses
# --------------------------------------------------------------------------------------------------
SHERPA_MAX_SYMBOLS_PER_FRAME = 10  # offline-transducer-greedy-search-nemo-decoder.cc


@torch.no_grad()
def torch_greedy(family: str, model: nn.Module, feats: torch.Tensor) -> list[int]:
    """Token ids of one utterance (features (T, F)) decoded greedily as sherpa-onnx does."""
    x = feats[None].float()
    lens = torch.tensor([feats.shape[0]], dtype=torch.int64)
    if family == "ctc":
        from compressor.asr.ctc import ctc_greedy

        out = model({"features": x, "feature_lengths": lens})
        return ctc_greedy(out["log_probs"], out["logit_lengths"], int(model.blank_id))[0]
    enc, enc_len = model.encode(x, lens)
    blank = int(model.vocab_size) - 1
    pred, state = model.predict(torch.tensor([[blank]]), model.initial_state(1))
    ids: list[int] = []
    for t in range(int(enc_len[0])):
        for _ in range(SHERPA_MAX_SYMBOLS_PER_FRAME):
            y = int(model.join(enc[0, t], pred[0, 0]).argmax())
            if y == blank:
                break
            ids.append(y)
            pred, state = model.predict(torch.tensor([[y]]), state)
    return ids


@torch.no_grad()
def torch_streaming_greedy(model: nn.Module, feats: torch.Tensor, chunk: int) -> list[int]:
    """What sherpa-onnx's online NeMo transducer decodes: chunks of ``chunk`` frames while a whole chunk
    *and one more frame* are ready (``IsReady``), encoder LSTM states carried, greedy as offline."""
    from compressor.export.graphs import RNNTStreamingEncoderGraph

    graph = RNNTStreamingEncoderGraph(model)
    layers, hidden = len(model.encoder.layers), int(model.encoder.layers[0].hidden_size)
    h = torch.zeros(1, layers, 1, hidden)
    c = torch.zeros(1, layers, 1, hidden)
    count = torch.zeros(1, dtype=torch.int64)
    blank = int(model.vocab_size) - 1
    pred, state = model.predict(torch.tensor([[blank]]), model.initial_state(1))
    ids: list[int] = []
    start = 0
    while start + chunk < feats.shape[0]:
        x = feats[start:start + chunk].T[None].float()
        out, _, h, c, count = graph(x, torch.tensor([chunk]), h, c, count)
        start += chunk
        for t in range(out.shape[2]):
            for _ in range(SHERPA_MAX_SYMBOLS_PER_FRAME):
                y = int(model.join(out[0, :, t], pred[0, 0]).argmax())
                if y == blank:
                    break
                ids.append(y)
                pred, state = model.predict(torch.tensor([[y]]), state)
    return ids


def sherpa_online_decode(files: dict[str, Path], tokens: Path, waves: Sequence[np.ndarray],
                         token_ids: dict[str, int], tail_seconds: float = 0.3, threads: int = 1
                         ) -> list[list[int]]:
    """Decode with sherpa-onnx's online recognizer (NeMo transducer), ``tail_seconds`` of silence appended."""
    import sherpa_onnx

    rec = sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(tokens), encoder=str(files["encoder"]), decoder=str(files["decoder"]),
        joiner=str(files["joiner"]), num_threads=threads, model_type="nemo_transducer")
    tail = np.zeros(int(tail_seconds * 16000), dtype=np.float32)
    out = []
    for wave in waves:
        stream = rec.create_stream()
        stream.accept_waveform(16000, np.concatenate([np.asarray(wave, dtype=np.float32), tail]))
        stream.input_finished()
        while rec.is_ready(stream):
            rec.decode_stream(stream)
        out.append([token_ids[t] for t in rec.tokens(stream)])
    return out


def sherpa_recognizer(family: str, files: dict[str, Path], tokens: Path, threads: int = 1) -> Any:
    import sherpa_onnx

    if family == "rnnt":
        return sherpa_onnx.OfflineRecognizer.from_transducer(
            encoder=str(files["encoder"]), decoder=str(files["decoder"]), joiner=str(files["joiner"]),
            tokens=str(tokens), num_threads=threads, model_type="nemo_transducer",
            decoding_method="greedy_search")
    return sherpa_onnx.OfflineRecognizer.from_nemo_ctc(model=str(files["model"]), tokens=str(tokens),
                                                       num_threads=threads)


def token_lookup(tokens: Sequence[str]) -> dict[str, int]:
    """Token string -> id, also under the spelling sherpa-onnx reports (it turns ``▁`` into a space)."""
    ids = {t: i for i, t in enumerate(tokens)}
    for i, t in enumerate(tokens):
        ids.setdefault(t.replace("▁", " "), i)
    return ids


def sherpa_decode(recognizer: Any, waves: Sequence[np.ndarray], token_ids: dict[str, int],
                  sample_rate: int = 16000) -> list[list[int]]:
    """Decode 16 kHz float waveforms one by one; token ids from sherpa-onnx's token strings."""
    out = []
    for wave in waves:
        stream = recognizer.create_stream()
        stream.accept_waveform(sample_rate, np.ascontiguousarray(wave, dtype=np.float32))
        recognizer.decode_stream(stream)
        out.append([token_ids[t] for t in stream.result.tokens])
    return out


@dataclass
class Utterance:
    wave: np.ndarray  # float32 16 kHz in [-1, 1]
    features: torch.Tensor  # (T, F): what the model saw in PyTorch
    text: str


def load_utterances(data: Any, split: str, limit: int) -> list[Utterance]:
    """Waveform, features and transcript of the first ``limit`` utterances of ``split``.

    The waveform comes from ``data.waveform(split, i) -> (samples, sample_rate)`` when the data module has
    it, else from the split's ``utts[i].audio`` (the speech data layer), else from the example's
    ``waveform``/``audio`` tensor or its ``audio_path``/``path``/``audio_filepath`` file; features from the
    collated example (the data layer's features).
    """
    from compressor.data.audio import resample

    ds = data.dataset(split)
    n = min(limit, len(ds))
    out = []
    for i in range(n):
        item = ds[i]
        wave, sr = _wave_of(data, split, i, item, ds)
        wave_t = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(-1)
        if sr != 16000:
            wave_t = resample(wave_t, int(sr), 16000)
        batch = data.collate([item])
        feats = batch["features"][0, : int(batch["feature_lengths"][0])]
        text = batch["text"][0] if "text" in batch else str(item.get("text", ""))
        out.append(Utterance(wave_t.numpy(), feats, text))
    return out


def _wave_of(data: Any, split: str, index: int, item: dict[str, Any], ds: Any) -> tuple[np.ndarray, int]:
    if hasattr(data, "waveform"):
        wave, sr = data.waveform(split, index)
        return np.asarray(wave, dtype=np.float32), int(sr)
    utts = getattr(ds, "utts", None)  # compressor.data.speech.SpeechSplit: Utterance(audio, offset, duration)
    if utts is not None and getattr(utts[index], "audio", None):
        from compressor.data.audio import load_audio

        u = utts[index]
        offset = getattr(u, "offset", 0) or 0
        wave = load_audio(u.audio, offset=offset, duration=getattr(u, "duration", None) if offset else None)
        return np.asarray(wave, dtype=np.float32), 16000
    sr = int(item.get("sample_rate", data.info.get("sample_rate", 16000)))
    for key in ("waveform", "audio", "wave"):
        if key in item and hasattr(item[key], "shape"):
            return np.asarray(item[key], dtype=np.float32), sr
    for key in ("audio_path", "path", "audio_filepath", "wav"):
        if key in item and item[key]:
            import soundfile as sf

            wave, sr = sf.read(str(item[key]), dtype="float32", always_2d=True)
            return wave.mean(axis=1), int(sr)
    raise UserError(f"the {split} split gives no audio (no data.waveform(), and example {index} has no "
                    f"waveform or audio path): sherpa-onnx parity needs the waveforms")
