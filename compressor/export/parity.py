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

from compressor.core.errors import UserError
from compressor.core.threads import thread_count
from compressor.export.graphs import GraphFile


def check_onnx(path: Path) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise UserError(f"{path.name} fails onnx.checker: {str(e).splitlines()[0]}") from None


def session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime CPU session on ``threads`` (default: the command's threads, see compressor.core.threads)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads if threads is not None else thread_count()
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


def parity_batches(data: Any, batch_sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Real test batches of several sizes, each also cut to about half its length (another time axis)."""
    split = "test" if "test" in data.datasets else next(iter(data.datasets))
    ds = data.dataset(split)
    out = []
    start = 0
    for bs in batch_sizes:
        idx = [(start + i) % len(ds) for i in range(bs)]
        start += bs
        batch = data.collate([ds[i] for i in idx])
        out.append(batch)
        half = max(4, int(batch["features"].shape[1]) // 2)
        out.append({**batch, "features": batch["features"][:, :half],
                    "feature_lengths": batch["feature_lengths"].clamp(max=half)})
    return out


def first_batch(data: Any, n: int) -> dict[str, Any]:
    """The first ``n`` test utterances, collated."""
    split = "test" if "test" in data.datasets else next(iter(data.datasets))
    ds = data.dataset(split)
    return data.collate([ds[i % len(ds)] for i in range(n)])


def sherpa_online_decode(files: dict[str, Path], tokens: Path, waves: Sequence[np.ndarray],
                         token_ids: dict[str, int], tail_seconds: float = 0.3, threads: int | None = None,
                         desc: str | None = None) -> list[list[int]]:
    """Decode with sherpa-onnx's online recognizer (NeMo transducer), ``tail_seconds`` of silence appended;
    ``threads`` defaults to the command's, ``desc`` names the progress shown."""
    import sherpa_onnx

    rec = sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(tokens), encoder=str(files["encoder"]), decoder=str(files["decoder"]),
        joiner=str(files["joiner"]), num_threads=threads if threads is not None else thread_count(),
        model_type="nemo_transducer")
    tail = np.zeros(int(tail_seconds * 16000), dtype=np.float32)
    out = []
    for wave in _tracked(waves, desc):
        stream = rec.create_stream()
        stream.accept_waveform(16000, np.concatenate([np.asarray(wave, dtype=np.float32), tail]))
        stream.input_finished()
        while rec.is_ready(stream):
            rec.decode_stream(stream)
        out.append([token_ids[t] for t in rec.tokens(stream)])
    return out


def token_lookup(tokens: Sequence[str]) -> dict[str, int]:
    """Token string -> id, also under the spelling sherpa-onnx reports (it turns ``▁`` into a space)."""
    ids = {t: i for i, t in enumerate(tokens)}
    for i, t in enumerate(tokens):
        ids.setdefault(t.replace("▁", " "), i)
    return ids


def _tracked(items: Sequence[Any], desc: str | None) -> Any:
    if desc is None:
        return items
    from compressor.core.progress import track

    return track(items, desc, total=len(items), unit="utt")


def sherpa_decode(recognizer: Any, waves: Sequence[np.ndarray], token_ids: dict[str, int],
                  sample_rate: int = 16000, desc: str | None = None) -> list[list[int]]:
    """Decode 16 kHz float waveforms one by one; token ids from sherpa-onnx's token strings. ``desc`` names
    the progress shown."""
    out = []
    for wave in _tracked(waves, desc):
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
