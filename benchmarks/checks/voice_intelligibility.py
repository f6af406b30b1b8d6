"""How intelligible is each espeak-ng English voice variant to an independent recogniser?

The synthetic corpora hold out voice variants for validation and test (``compressor/corpora/voices.py``). A held-out
voice is only a fair test if it is about as intelligible as the training voices. This script speaks N sentences
of the small English read-speech grammar with every variant espeak-ng ships (en-us, rate 175, pitch 50) and
decodes them with PocketSphinx's bundled English acoustic model, constrained to that grammar (JSGF), so the
word error rate measures how recognisable the voice is to a model trained on real speech, not the grammar.

    pip install pocketsphinx   # measurement only; not a dependency of compressor
    python benchmarks/checks/voice_intelligibility.py --sentences 60 --seed 1

Writes ``benchmarks/checks/results/voice_intelligibility.{json,md}``: WER per variant, with its family and the split
that uses it. Takes about 10 minutes alone on 2 CPU cores (much longer when the cores are shared).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from compressor.corpora import voices  # noqa: E402
from compressor.corpora.build import _to_16k  # noqa: E402
from compressor.corpora.grammars import GRAMMARS  # noqa: E402
from compressor.corpora.synth import Espeak, Voice  # noqa: E402


def _jsgf() -> str:
    g = GRAMMARS["en"]
    rules = [f"<{k}> = " + " | ".join(f"( {v} )" for v in vals) + ";" for k, vals in g.slots.items()]
    alts = " | ".join("( " + re.sub(r"\{(\w+)\}", r"<\1>", t) + " )" for t in g.templates)
    return "#JSGF V1.0;\ngrammar g;\n" + "\n".join(rules) + f"\npublic <s> = {alts};\n"


def _side(variant: str) -> str:
    for name, members in (("train", voices.TRAIN_VARIANTS), ("valid", voices.VALID_VARIANTS),
                          ("test", voices.TEST_VARIANTS)):
        if variant in members:
            return name
    return "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "results" / "voice_intelligibility"))
    p.add_argument("--render", action="store_true",
                   help="only rewrite the tables from the JSON (splits and families as voices.py has them now)")
    args = p.parse_args()
    out = Path(args.out)
    if args.render:
        saved = json.loads(out.with_suffix(".json").read_text())
        for name, r in saved["variants"].items():
            variant = "" if name == "default" else name
            r.update(family=voices.family(variant), split=_side(variant))
        _write(out, saved["meta"], saved["variants"])
        return
    torch.set_num_threads(1)
    import espeakng_loader
    import torchaudio.functional as AF
    from pocketsphinx import Decoder

    dec = Decoder(samprate=16000, loglevel="FATAL")
    dec.add_jsgf_string("grammar", _jsgf())
    dec.activate_search("grammar")
    engine = Espeak.get()
    rng = random.Random(args.seed)
    sentences = [GRAMMARS["en"].sample(rng) for _ in range(args.sentences)]
    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    variants = [""] + sorted(v.name for v in folder.iterdir() if " " not in v.name)
    results = {}
    for variant in variants:
        errors = words = 0
        for i, text in enumerate(sentences):
            wave = _to_16k(engine.synthesize(text, Voice("en-us", variant), i), engine.sample_rate)
            dec.start_utt()
            dec.process_raw((wave * 32767).astype(np.int16).tobytes(), full_utt=True)
            dec.end_utt()
            hyp = dec.hyp().hypstr.lower() if dec.hyp() else ""
            errors += AF.edit_distance(text.split(), hyp.split())
            words += len(text.split())
        results[variant or "default"] = {"wer": errors / words, "family": voices.family(variant),
                                         "split": _side(variant)}
        print(f"{variant or 'default':14s} {errors / words:.3f} {results[variant or 'default']['split']}",
              flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    meta = {"machine": f"{platform.machine()} 2-core CPU VM, shared",
            "date": datetime.date.today().isoformat(), "commit": commit,
            "command": f"python benchmarks/checks/voice_intelligibility.py --sentences {args.sentences} "
                       f"--seed {args.seed}",
            "sentences": args.sentences, "voice": "en-us, rate 175, pitch 50",
            "recogniser": "PocketSphinx en-us acoustic model, JSGF of the small English grammar"}
    _write(Path(args.out), meta, results)


def _write(out: Path, meta: dict, results: dict) -> None:
    meta["machine"] = " ".join(meta["machine"].split())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "variants": results}, indent=1))
    by_split: dict[str, list[float]] = {}
    for r in results.values():
        by_split.setdefault(r["split"], []).append(r["wer"])
    lines = ["# Intelligibility of espeak-ng voice variants (PocketSphinx, grammar-constrained)", "",
             f"{meta['machine']}, {meta['date']}, commit {meta['commit']}. Command: `{meta['command']}`.",
             f"{meta['sentences']} sentences of the small English grammar per variant ({meta['voice']}).", "",
             "| split | variants | mean WER | median WER |", "|---|---:|---:|---:|"]
    for split in ("train", "valid", "test", "-"):
        w = sorted(by_split.get(split, []))
        if w:
            lines.append(f"| {split if split != '-' else 'unused'} | {len(w)} | {np.mean(w):.3f} | "
                         f"{np.median(w):.3f} |")
    lines += ["", "| variant | family | split | WER |", "|---|---|---|---:|"]
    for name, r in sorted(results.items(), key=lambda kv: kv[1]["wer"]):
        lines.append(f"| {name} | {r['family']} | {r['split']} | {r['wer']:.3f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
