#!/usr/bin/env python3
"""Classify WAV files (intents, keywords) with a classifier exported by ``compressor export``.

Needs only ``onnxruntime``, ``numpy`` and ``soundfile``; nothing from compressor:

    python classify_onnxruntime.py --model-dir runs/slu/2026.../export a.wav b.wav

The export directory holds ``model.onnx`` (log-mel features -> logits) and ``labels.txt``. The features are
computed here in numpy exactly like the data layer's default front end (``--frontend nemo``: sherpa-onnx's
NeMo front end, 80 Slaney mel bins over 0-7600 Hz, Povey window, no DC removal; ``kaldi``: kaldi fbank).
Prints ``FILE<TAB>LABEL<TAB>PROBABILITY``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import soundfile as sf


def _mel_htk(f: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(f / 700.0)


def _mel_slaney(f: float) -> float:
    return f * 3 / 200.0 if f < 1000 else 15 + math.log(f / 1000) / (math.log(6.4) / 27.0)


def _hz_slaney(m: float) -> float:
    return 200.0 / 3 * m if m < 15 else 1000 * math.exp((m - 15) * math.log(6.4) / 27.0)


def mel_banks(frontend: str, bins: int = 80) -> np.ndarray:
    """(bins, 257) triangular filters as kaldi-native-fbank builds them for a 512-point FFT at 16 kHz."""
    width, high = 16000 / 512, 7600.0
    out = np.zeros((bins, 257))
    if frontend == "kaldi":
        lo, hi = _mel_htk(np.float64(20.0)), _mel_htk(np.float64(high))
        delta = (hi - lo) / (bins + 1)
        mel = _mel_htk(np.arange(256) * width)
        for b in range(bins):
            left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
            w = np.where(mel <= center, (mel - left) / (center - left), (right - mel) / (right - center))
            out[b, :256] = np.where((mel > left) & (mel < right), w, 0.0)
    else:
        lo, hi = _mel_slaney(0.0), _mel_slaney(high)
        delta = (hi - lo) / (bins + 1)
        hz = np.arange(257) * width
        for b in range(bins):
            left, center, right = (_hz_slaney(lo + k * delta) for k in (b, b + 1, b + 2))
            w = np.where(hz <= center, (hz - left) / (center - left), (right - hz) / (right - center))
            out[b] = np.where((hz > left) & (hz < right), w * 2.0 / (right - left), 0.0)
    return out


def fbank(samples: np.ndarray, frontend: str = "nemo") -> np.ndarray:
    """(T, 80) log-mel features of 16 kHz samples in [-1, 1] (25 ms frames every 10 ms, snip_edges=False)."""
    x = samples.astype(np.float64)
    n = len(x)
    num = (n + 80) // 160
    idx = 80 - 200 + np.arange(num)[:, None] * 160 + np.arange(400)[None, :]
    idx = np.where(idx < 0, -idx - 1, idx)
    idx = np.clip(np.where(idx >= n, 2 * n - 1 - idx, idx), 0, n - 1)
    frames = x[idx]
    if frontend == "kaldi":
        frames = frames - frames.mean(axis=1, keepdims=True)
    prev = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = frames - 0.97 * prev
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)) ** 0.85
    power = np.abs(np.fft.rfft(frames * window, n=512)) ** 2
    mel = power @ mel_banks(frontend).T
    return np.log(np.maximum(mel, np.finfo(np.float32).eps)).astype(np.float32)


def read_16k(path: Path) -> np.ndarray:
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != 16000:  # simple linear resampling; resample beforehand for best fidelity
        t = np.arange(int(len(samples) * 16000 / rate)) * rate / 16000
        samples = np.interp(t, np.arange(len(samples)), samples).astype(np.float32)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--frontend", choices=["nemo", "kaldi"], default="nemo")
    parser.add_argument("--int8", action="store_true", help="use model.int8.onnx")
    parser.add_argument("wavs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    model = args.model_dir / ("model.int8.onnx" if args.int8 else "model.onnx")
    if not model.exists():
        sys.exit(f"error: {model} not found")
    labels = (args.model_dir / "labels.txt").read_text(encoding="utf-8").split("\n")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    per_feature = session.get_modelmeta().custom_metadata_map.get("normalize_type") == "per_feature"
    for wav in args.wavs:
        feats = fbank(read_16k(wav), args.frontend)
        if per_feature:  # per-utterance mean/variance normalisation (NeMo's per_feature)
            mean = feats.mean(axis=0, keepdims=True)
            var = np.maximum((feats.astype(np.float64) ** 2).mean(axis=0, keepdims=True) - mean**2, 0.0)
            feats = ((feats - mean) / (np.sqrt(var) + 1e-5)).astype(np.float32)
        logits = session.run(None, {"features": feats[None], "feature_lengths": np.array([len(feats)])})[0][0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(probs.argmax())
        print(f"{wav}\t{labels[best]}\t{probs[best]:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
