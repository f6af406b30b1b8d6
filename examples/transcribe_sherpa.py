#!/usr/bin/env python3
"""Transcribe WAV files with a model exported by ``compressor export``, using only sherpa-onnx.

Needs nothing from compressor: ``pip install sherpa-onnx numpy soundfile``.

    python transcribe_sherpa.py --model-dir runs/rnnt_lcmr/2026.../export a.wav b.wav
    python transcribe_sherpa.py --model-dir EXPORT_DIR --int8 a.wav
    python transcribe_sherpa.py --model-dir EXPORT_DIR --streaming a.wav   # online, chunk by chunk

The export directory holds either ``encoder.onnx``/``decoder.onnx``/``joiner.onnx`` (an RNN-T, loaded as
sherpa-onnx's NeMo transducer) or ``model.onnx`` (a CTC model, loaded as a NeMo CTC model), plus
``tokens.txt``. ``--streaming`` feeds ``encoder.streaming.onnx`` (with the same decoder and joiner) to
sherpa-onnx's online recognizer, 0.1 s of audio at a time. sherpa-onnx computes the features from the
waveform itself. Prints ``FILE<TAB>TRANSCRIPT``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import sherpa_onnx
import soundfile as sf

WORD_BOUNDARIES = ("▁", "|", "<space>")


def load_recognizer(model_dir: Path, int8: bool = False, threads: int = 1) -> sherpa_onnx.OfflineRecognizer:
    suffix = ".int8.onnx" if int8 else ".onnx"
    tokens = model_dir / "tokens.txt"
    if not tokens.exists():
        sys.exit(f"error: {tokens} not found")
    parts = {name: model_dir / f"{name}{suffix}" for name in ("encoder", "decoder", "joiner")}
    if all(p.exists() for p in parts.values()):
        return sherpa_onnx.OfflineRecognizer.from_transducer(
            encoder=str(parts["encoder"]), decoder=str(parts["decoder"]), joiner=str(parts["joiner"]),
            tokens=str(tokens), num_threads=threads, model_type="nemo_transducer",
            decoding_method="greedy_search")
    model = model_dir / f"model{suffix}"
    if model.exists():
        return sherpa_onnx.OfflineRecognizer.from_nemo_ctc(model=str(model), tokens=str(tokens),
                                                           num_threads=threads)
    sys.exit(f"error: {model_dir} has neither encoder/decoder/joiner{suffix} nor model{suffix}")


def transcribe_streaming(model_dir: Path, wav: Path, int8: bool = False, threads: int = 1) -> str:
    """Online decoding: the audio arrives in 100 ms pieces, partial results are available after each."""
    suffix = ".int8.onnx" if int8 else ".onnx"
    files = {k: model_dir / f"{k}{suffix}" for k in ("decoder", "joiner")}
    files["encoder"] = model_dir / f"encoder.streaming{suffix}"
    if not all(p.exists() for p in files.values()):
        sys.exit(f"error: {model_dir} has no streaming export (encoder.streaming{suffix})")
    recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(model_dir / "tokens.txt"), encoder=str(files["encoder"]), decoder=str(files["decoder"]),
        joiner=str(files["joiner"]), num_threads=threads, model_type="nemo_transducer")
    samples, rate = read_wave(wav)
    stream = recognizer.create_stream()
    step = rate // 10
    tail = np.zeros(int(0.3 * rate), dtype=np.float32)  # flushes the last chunk
    for audio in [samples[i:i + step] for i in range(0, len(samples), step)] + [tail]:
        stream.accept_waveform(rate, audio)
        while recognizer.is_ready(stream):
            recognizer.decode_stream(stream)
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    return to_text(list(recognizer.tokens(stream)))


def read_wave(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate (sherpa-onnx resamples to 16 kHz itself)."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(samples.mean(axis=1)), int(rate)


def to_text(tokens: list[str]) -> str:
    pieces = []
    for tok in tokens:
        if tok.startswith("<") and tok.endswith(">") and tok != "<space>":
            continue
        for mark in WORD_BOUNDARIES:
            tok = tok.replace(mark, " ")
        pieces.append(tok)
    return " ".join("".join(pieces).split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="the export directory")
    parser.add_argument("--int8", action="store_true", help="use the int8 files")
    parser.add_argument("--streaming", action="store_true", help="online recognizer, chunk by chunk")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("wavs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.streaming:
        for wav in args.wavs:
            print(f"{wav}\t{transcribe_streaming(args.model_dir, wav, args.int8, args.threads)}", flush=True)
        return 0
    recognizer = load_recognizer(args.model_dir, args.int8, args.threads)
    for wav in args.wavs:
        samples, rate = read_wave(wav)
        stream = recognizer.create_stream()
        stream.accept_waveform(rate, samples)
        recognizer.decode_stream(stream)
        print(f"{wav}\t{to_text(list(stream.result.tokens))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
