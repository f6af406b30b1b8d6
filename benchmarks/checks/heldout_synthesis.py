"""How does a model trained on espeak-ng speech do on speech made another way, and is that speech fair?

Evaluates a finished run's models on its own ``test`` split (unseen espeak-ng voices) and on the
``heldout_speech`` splits that speak the same sentences with other synthesisers (SVOX Pico, Hibari;
``docs/data.md``, "Held-out synthesis methods"). With ``--whisper N`` it also decodes the first N utterances
of each with Whisper base (the ``whisper`` extra: a recogniser trained on real speech), so a gap can be told
apart from held-out audio that is simply harder to understand.

    pip install -e ".[heldout,whisper]"
    python benchmarks/checks/heldout_synthesis.py RUN_DIR --whisper 60

The run's data must be a ``read_speech`` corpus (English). Writes
``benchmarks/checks/results/heldout_synthesis.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from compressor.corpora.heldout import BaseCorpusArgs  # noqa: E402
from compressor.data.audio import load_audio  # noqa: E402
from compressor.data.cache import default_cache_dir  # noqa: E402
from compressor.data.compat import retokenize  # noqa: E402
from compressor.families.asr.metrics import wer  # noqa: E402
from compressor.plugins import get_registry  # noqa: E402
from compressor.run.engine import evaluate_model  # noqa: E402
from compressor.run.finished import load_run  # noqa: E402

SYNTHS = ("pico", "hibari")


def _words(text: str) -> str:
    from num2words import num2words

    text = re.sub(r"\d+", lambda m: f" {num2words(int(m.group()))} ", text.lower())
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.replace("-", " ")).split())


def whisper_wer(utts: list[Any], n: int) -> float:
    """Whisper base's WER on the first ``n`` utterances (greedy, English)."""
    from faster_whisper import WhisperModel

    from compressor.external.whisper_ct2 import assemble_whisper_base

    model = WhisperModel(str(assemble_whisper_base()), device="cpu", compute_type="int8", cpu_threads=1)
    hyps, refs = [], []
    for u in utts[:n]:
        audio = load_audio(u.audio).numpy().astype(np.float32)
        segments, _ = model.transcribe(audio, language="en", beam_size=1)
        hyps.append(_words(" ".join(s.text for s in segments)))
        refs.append(_words(u.text))
    return wer(hyps, refs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--whisper", type=int, default=0, help="utterances per split Whisper base decodes")
    args = parser.parse_args()
    run = load_run(args.run_dir, threads=1, splits=["test"])
    spec_data = run.loaded.spec.data
    if spec_data.name != "read_speech":
        raise SystemExit(f"{args.run_dir}: the run's data is {spec_data.name}, not read_speech")
    data_args = run.loaded.data_args
    base = {k: getattr(data_args, k) for k in BaseCorpusArgs.model_fields}
    registry = get_registry()
    held_args = registry.parse_args("dataset", "heldout_speech", {"base": base, "frontend": data_args.frontend},
                                    ("data",))
    held = registry.get("dataset", "heldout_speech").factory(held_args, cache_dir=default_cache_dir(), seed=0)
    splits = [f"test_{s}" for s in SYNTHS]
    retokenize(held, run.data.tokenizer, "en", "heldout", splits)
    batch = run.loaded.spec.stages[-1].batch_size
    results: dict[str, Any] = {"run_dir": str(args.run_dir), "base": base, "models": {},
                               "synthesizers": held.info["synthesizers"], "date": datetime.date.today().isoformat()}
    sets = {"test": (run.data, "test"), **{s: (held, s) for s in splits}}
    for name in run.models:
        results["models"][name] = {key: evaluate_model(run.task, module, run.models[name], name, split, batch,
                                                       0, run.device)["wer"]
                                   for key, (module, split) in sets.items()}
    if args.whisper:
        results["whisper_base"] = {key: whisper_wer(module.dataset(split).utts, args.whisper)
                                   for key, (module, split) in sets.items()}
        results["whisper_utterances"] = args.whisper
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "heldout_synthesis.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [f"# Held-out synthesis methods: spec {run.loaded.spec.name}, seed {run.loaded.spec.seed} "
             f"({results['date']})", "",
             f"WER on the same {len(held.dataset(splits[0]))} test sentences: unseen espeak-ng voices (`test`) and "
             f"the other synthesisers ({', '.join(f'{k} {v}' for k, v in results['synthesizers'].items())}).", "",
             "| model | test (espeak-ng) | " + " | ".join(splits) + " |", "|---|---:|" + "---:|" * len(splits)]
    rows = dict(results["models"])
    if args.whisper:
        rows[f"Whisper base (first {args.whisper})"] = results["whisper_base"]
    for name, by_set in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * by_set[k]:.1f}%" for k in sets) + " |")
    (HERE / "results" / "heldout_synthesis.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
