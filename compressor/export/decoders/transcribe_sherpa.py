#!/usr/bin/env python3
"""Transcribe WAV files with a model exported by ``compressor export``, using only sherpa-onnx.

Needs nothing from compressor: ``pip install sherpa-onnx numpy soundfile``.

    python transcribe_sherpa.py a.wav b.wav        # run inside an export folder: it decodes that export
    python transcribe_sherpa.py --model-dir runs/rnnt_lcmr/2026.../export a.wav b.wav
    python transcribe_sherpa.py --model-dir EXPORT_DIR --int8 a.wav
    python transcribe_sherpa.py --model-dir EXPORT_DIR --streaming a.wav   # online, chunk by chunk

Everything else comes from the export's ``model.json``: which sherpa-onnx recognizer, the ``model_type``,
the files, and the front end each recognizer computes (sherpa-onnx computes features from the waveform
itself; the offline and online NeMo-transducer recognizers compute different ones, and the manifest says
which of them the model was trained on: a note goes to stderr when you pick the other). ``--model-type`` is
checked against the export and refused when it disagrees. Exports without ``model.json`` are recognised by
their files (``encoder/decoder/joiner.onnx``: NeMo transducer; ``model.onnx``: NeMo CTC). ``--streaming``
feeds the online recognizer 0.1 s of audio at a time. Prints ``FILE<TAB>TRANSCRIPT``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import sherpa_onnx
import soundfile as sf

WORD_BOUNDARIES = ("▁", "|", "<space>")


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / "model.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def artefact_from_files(model_dir: Path, streaming: bool) -> dict[str, Any]:
    """An export without model.json: the artefact its files imply."""
    files = {"tokens": "tokens.txt"}
    if streaming:
        files.update(encoder="encoder.streaming.onnx", decoder="decoder.onnx", joiner="joiner.onnx")
        call, model_type = "sherpa_onnx.OnlineRecognizer.from_transducer", "nemo_transducer"
    elif (model_dir / "encoder.onnx").exists():
        files.update(encoder="encoder.onnx", decoder="decoder.onnx", joiner="joiner.onnx")
        call, model_type = "sherpa_onnx.OfflineRecognizer.from_transducer", "nemo_transducer"
    else:
        files.update(model="model.onnx")
        call, model_type = "sherpa_onnx.OfflineRecognizer.from_nemo_ctc", "nemo_ctc"
    int8 = {k: v.replace(".onnx", ".int8.onnx") for k, v in files.items()}
    kwargs = {"model_type": model_type} if "transducer" in call else {}
    return {"name": "streaming" if streaming else "offline", "call": call, "files": files, "int8_files": int8,
            "kwargs": kwargs, "model_type": model_type, "streaming": {"tail_padding_seconds": 0.3}
            if streaming else None, "frontend_matches_training": None}


def choose_artefact(model_dir: Path, streaming: bool, model_type: str | None) -> dict[str, Any]:
    manifest = read_manifest(model_dir)
    if manifest is None:
        art = artefact_from_files(model_dir, streaming)
    else:
        if manifest.get("runtime") == "onnxruntime" or manifest.get("family") == "classifier":
            fail(f"{model_dir} is a classifier export (onnxruntime): use classify_onnxruntime.py")
        wanted = "streaming" if streaming else "offline"
        arts = {a["name"]: a for a in manifest["artefacts"]}
        if wanted not in arts:
            fail(f"{model_dir} has no {wanted} artefact (it has: {', '.join(arts)})")
        art = arts[wanted]
        if art.get("frontend_matches_training") is False:
            better = [a["name"] for a in manifest["artefacts"] if a.get("frontend_matches_training")]
            print(f"note: the {wanted} recognizer computes '{art['frontend']['name']}' features but the model was "
                  f"trained on '{manifest['training_frontend']['name']}'"
                  + (f"; the {better[0]} artefact matches it" if better else ""), file=sys.stderr)
    if model_type is not None and model_type != art.get("model_type"):
        fail(f"--model-type {model_type} disagrees with the export: {model_dir} is a sherpa-onnx "
             f"'{art.get('model_type')}' model ({art['call']}); drop --model-type")
    return art


def load_recognizer(model_dir: Path, art: dict[str, Any], int8: bool = False, threads: int = 1) -> Any:
    files = art.get("int8_files") if int8 else art["files"]
    if not files:
        fail(f"{model_dir} has no int8 files for the {art['name']} recognizer (the int8 guard rejected them)")
    missing = [name for name in files.values() if not (model_dir / name).exists()]
    if missing:
        fail(f"{model_dir} lacks {', '.join(missing)}")
    cls_name, factory_name = art["call"].split(".")[-2:]
    factory = getattr(getattr(sherpa_onnx, cls_name), factory_name)
    kwargs = {**art["kwargs"], "num_threads": threads}
    return factory(**{k: str(model_dir / v) for k, v in files.items()}, **kwargs)


def transcribe_streaming(recognizer: Any, wav: Path, tail_seconds: float) -> str:
    """Online decoding: the audio arrives in 100 ms pieces, partial results are available after each."""
    samples, rate = read_wave(wav)
    stream = recognizer.create_stream()
    step = rate // 10
    tail = np.zeros(int(tail_seconds * rate), dtype=np.float32)  # flushes the last chunk
    for audio in [samples[i:i + step] for i in range(0, len(samples), step)] + [tail]:
        stream.accept_waveform(rate, audio)
        while recognizer.is_ready(stream):
            recognizer.decode_stream(stream)
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    return to_text(list(recognizer.tokens(stream)))


def read_wave(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate (sherpa-onnx resamples to 16 kHz itself); a file
    that cannot be read ends the script with one line (exit code 2)."""
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, ValueError) as e:  # soundfile raises LibsndfileError (a RuntimeError)
        fail(f"{path}: cannot read the audio ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    if samples.size == 0:
        fail(f"{path}: no audio samples")
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
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="the export directory (default: this script's folder, when it is an export)")
    parser.add_argument("--int8", action="store_true", help="use the int8 files")
    parser.add_argument("--streaming", action="store_true", help="online recognizer, chunk by chunk")
    parser.add_argument("--model-type", default=None,
                        help="sherpa-onnx model_type; read from the export, refused when it disagrees")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("wavs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.model_dir is None:
        here = Path(__file__).parent
        if not (here / "model.json").exists():
            parser.error("--model-dir is required (this script is not inside an export folder)")
        args.model_dir = here
    if not (args.model_dir / "tokens.txt").exists():
        fail(f"{args.model_dir / 'tokens.txt'} not found")
    for wav in args.wavs:  # before loading the model: a typo in a file name is found at once
        if not wav.is_file():
            fail(f"{wav}: {'not a file' if wav.exists() else 'no such file'}")
    art = choose_artefact(args.model_dir, args.streaming, args.model_type)
    recognizer = load_recognizer(args.model_dir, art, args.int8, args.threads)
    for wav in args.wavs:
        if args.streaming:
            text = transcribe_streaming(recognizer, wav, float((art["streaming"] or {}).get("tail_padding_seconds",
                                                                                            0.3)))
        else:
            samples, rate = read_wave(wav)
            stream = recognizer.create_stream()
            stream.accept_waveform(rate, samples)
            recognizer.decode_stream(stream)
            text = to_text(list(stream.result.tokens))
        print(f"{wav}\t{text}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
