#!/usr/bin/env python3
"""Classify WAV files (intents, keywords) with a classifier exported by ``compressor export``.

Needs only ``onnxruntime``, ``numpy`` and ``soundfile``; nothing from compressor:

    python classify_onnxruntime.py a.wav b.wav     # run inside an export folder: it uses that export
    python classify_onnxruntime.py --model-dir runs/slu/2026.../export a.wav b.wav

The export directory holds ``model.onnx`` (log-mel features -> logits), ``labels.txt`` and ``model.json``.
onnxruntime computes no features, so they are computed here in numpy with the front end the model was trained
on, read from the export (``model.json``'s ``training_frontend``, else the ONNX metadata ``frontend_*``): its
window, mel range and filters, DC-offset removal. ``--frontend`` is only needed for exports that do not name
one; a ``--frontend`` that disagrees with the export is refused. Prints ``FILE<TAB>LABEL<TAB>PROBABILITY``.
"""

from __future__ import annotations

import argparse
import json
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


#: front end name -> (window, low Hz, high Hz, mel scale, remove DC offset), as sherpa-onnx configures them
FRONTENDS = {
    "nemo": ("povey", 0.0, 7600.0, "slaney", False),
    "nemo_transducer": ("povey", 0.0, 7600.0, "slaney", False),
    "nemo_ctc": ("hann", 0.0, 8000.0, "slaney", False),
    "nemo_online": ("hann", 0.0, 8000.0, "slaney", False),
    "kaldi": ("povey", 20.0, 7600.0, "htk", True),
}


def mel_banks(mel: str, low: float, high: float, bins: int = 80) -> np.ndarray:
    """(bins, 257) triangular filters as kaldi-native-fbank builds them for a 512-point FFT at 16 kHz."""
    width = 16000 / 512
    out = np.zeros((bins, 257))
    if mel == "htk":
        lo, hi = _mel_htk(np.float64(low)), _mel_htk(np.float64(high))
        delta = (hi - lo) / (bins + 1)
        m = _mel_htk(np.arange(256) * width)
        for b in range(bins):
            left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
            w = np.where(m <= center, (m - left) / (center - left), (right - m) / (right - center))
            out[b, :256] = np.where((m > left) & (m < right), w, 0.0)
    else:  # slaney mel scale, slaney-normalised filters (librosa)
        lo, hi = _mel_slaney(low), _mel_slaney(high)
        delta = (hi - lo) / (bins + 1)
        hz = np.arange(257) * width
        for b in range(bins):
            left, center, right = (_hz_slaney(lo + k * delta) for k in (b, b + 1, b + 2))
            w = np.where(hz <= center, (hz - left) / (center - left), (right - hz) / (right - center))
            out[b] = np.where((hz > left) & (hz < right), w * 2.0 / (right - left), 0.0)
    return out


def fbank(samples: np.ndarray, frontend: str | tuple = "nemo") -> np.ndarray:
    """(T, 80) log-mel features of 16 kHz samples in [-1, 1] (25 ms frames every 10 ms, snip_edges=False).

    ``frontend`` is a name of :data:`FRONTENDS` or its settings tuple.
    """
    window_kind, low, high, mel, remove_dc = FRONTENDS[frontend] if isinstance(frontend, str) else frontend
    x = samples.astype(np.float64)
    n = len(x)
    num = (n + 80) // 160
    idx = 80 - 200 + np.arange(num)[:, None] * 160 + np.arange(400)[None, :]
    idx = np.where(idx < 0, -idx - 1, idx)
    idx = np.clip(np.where(idx >= n, 2 * n - 1 - idx, idx), 0, n - 1)
    frames = x[idx]
    if remove_dc:
        frames = frames - frames.mean(axis=1, keepdims=True)
    prev = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = frames - 0.97 * prev
    k = np.arange(400)
    if window_kind == "povey":
        window = (0.5 - 0.5 * np.cos(2 * np.pi * k / 399)) ** 0.85
    else:  # kaldi-native-fbank's "hann" is the periodic one
        window = 0.5 - 0.5 * np.cos(2 * np.pi * k / 400)
    power = np.abs(np.fft.rfft(frames * window, n=512)) ** 2
    energies = power @ mel_banks(mel, low, high).T
    return np.log(np.maximum(energies, np.finfo(np.float32).eps)).astype(np.float32)


def export_frontend(model_dir: Path, meta: dict[str, str]) -> tuple[str, tuple] | None:
    """(name, settings) of the front end the export was trained on, or None when it names none."""
    manifest = model_dir / "model.json"
    fe = None
    if manifest.exists():
        fe = json.loads(manifest.read_text(encoding="utf-8")).get("training_frontend")
    elif "frontend_window" in meta:
        fe = {"name": meta.get("training_frontend", meta.get("frontend")), "window": meta["frontend_window"],
              "low_freq_hz": float(meta["frontend_low_freq_hz"]), "high_freq_hz": float(meta["frontend_high_freq_hz"]),
              "mel_scale": meta["frontend_mel_scale"], "remove_dc_offset": meta["frontend_remove_dc_offset"] == "true"}
    if not fe:
        return None
    if "window" not in fe:
        if fe.get("name") in FRONTENDS:
            return fe["name"], FRONTENDS[fe["name"]]
        sys.exit(f"error: {model_dir}: the model was trained on front end '{fe.get('name')}', which this script "
                 f"cannot compute (it computes: {', '.join(FRONTENDS)})")
    mel = "htk" if str(fe["mel_scale"]).startswith("htk") else "slaney"
    return fe["name"], (fe["window"], float(fe["low_freq_hz"]), float(fe["high_freq_hz"]), mel,
                        bool(fe["remove_dc_offset"]))


def read_16k(path: Path) -> np.ndarray:
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, ValueError) as e:  # soundfile raises LibsndfileError (a RuntimeError)
        print(f"error: {path}: cannot read the audio ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
              file=sys.stderr)
        sys.exit(2)
    samples = samples.mean(axis=1)
    if rate != 16000:  # simple linear resampling; resample beforehand for best fidelity
        t = np.arange(int(len(samples) * 16000 / rate)) * rate / 16000
        samples = np.interp(t, np.arange(len(samples)), samples).astype(np.float32)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="the export directory (default: this script's folder, when it is an export)")
    parser.add_argument("--frontend", choices=sorted(FRONTENDS), default=None,
                        help="only for exports that do not name their front end (default there: nemo)")
    parser.add_argument("--int8", action="store_true", help="use model.int8.onnx")
    parser.add_argument("wavs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.model_dir is None:
        here = Path(__file__).parent
        if not (here / "model.json").exists():
            parser.error("--model-dir is required (this script is not inside an export folder)")
        args.model_dir = here
    for wav in args.wavs:  # before loading the model: a typo in a file name is found at once
        if not wav.is_file():
            print(f"error: {wav}: {'not a file' if wav.exists() else 'no such file'}", file=sys.stderr)
            return 2
    model = args.model_dir / ("model.int8.onnx" if args.int8 else "model.onnx")
    if not model.exists():
        sys.exit(f"error: {model} not found")
    labels = (args.model_dir / "labels.txt").read_text(encoding="utf-8").split("\n")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    found = export_frontend(args.model_dir, meta)
    if found is None:
        settings = FRONTENDS[args.frontend or "nemo"]
        if args.frontend is None:
            print(f"note: {args.model_dir} does not name its front end; computing 'nemo' features "
                  f"(pass --frontend to choose)", file=sys.stderr)
    else:
        name, settings = found
        if args.frontend is not None and FRONTENDS[args.frontend] != settings:
            print(f"error: --frontend {args.frontend} disagrees with the export: {args.model_dir} was trained on "
                  f"'{name}' features ({settings[0]} window, mel {settings[1]:g}-{settings[2]:g} Hz); drop "
                  f"--frontend (the export's front end is used) or pass --frontend {name}", file=sys.stderr)
            return 2
    per_feature = meta.get("normalize_type") == "per_feature"
    for wav in args.wavs:
        feats = fbank(read_16k(wav), settings)
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
