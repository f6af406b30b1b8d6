"""Seen-voice vs unseen-voice error rates of finished runs, side by side.

The synthetic corpora's ``test`` split is spoken by voice variants no training speaker uses; ``test_seen`` by the
training speakers (new utterances). This evaluates a finished run's models on both (and on ``valid``, also
unseen voices), plus any other NeMo manifest (e.g. the test split of a corpus built by an older version), and
writes a markdown table and JSON with the unseen/seen WER ratio.

    python benchmarks/checks/voice_split_wer.py runs/rnnt_lcmr/<timestamp> \\
        --manifest old_test=$COMPRESSOR_CACHE/corpora/read_speech-en-<key>/test.jsonl

A manifest is read with the run's own tokenizer, front end and feature normalisation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from compressor.data.cache import default_cache_dir  # noqa: E402
from compressor.data.extract import extract_features  # noqa: E402
from compressor.data.formats import read_nemo_manifest  # noqa: E402
from compressor.data.speech import SpeechSplit  # noqa: E402
from compressor.data.text import normalize  # noqa: E402
from compressor.run.finished import load_run  # noqa: E402


def add_manifest(data, name: str, path: Path) -> int:  # noqa: ANN001 - a SpeechDataModule
    """Add a manifest as split ``name`` of ``data`` (tokenised and featurised as the run's data)."""
    utts, _ = read_nemo_manifest(path, name)
    for u in utts:
        u.text = normalize(u.text)
    store, errors = extract_features(utts, data.info["frontend"], default_cache_dir())
    keep = [i for i, e in enumerate(errors) if e is None]
    tokens = [data.tokenizer.encode(utts[i].text) for i in keep]
    data.datasets[name] = SpeechSplit([utts[i] for i in keep], store.select(keep), tokens, [{} for _ in keep],
                                      None, data.info["frontend"], 0, data.info.get("normalize_type") or "none")
    return len(keep)


def add_variant_splits(data, split: str) -> list[str]:  # noqa: ANN001 - a SpeechDataModule
    """Split ``split`` by voice variant (from the speaker ids ``<voice>_<variant>_r<rate>_p<pitch>``)."""
    ds = data.dataset(split)
    groups: dict[str, list[int]] = {}
    for i, u in enumerate(ds.utts):
        groups.setdefault(u.speaker.split("_")[1] if u.speaker.count("_") >= 3 else "?", []).append(i)
    names = []
    for variant, idx in sorted(groups.items()):
        name = f"{split}:{variant}"
        data.datasets[name] = SpeechSplit([ds.utts[i] for i in idx], ds.features.select(idx),
                                          [ds.tokens[i] for i in idx], [ds.labels[i] for i in idx], None,
                                          ds.frontend, 0, ds.normalize)
        names.append(name)
    return names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="finished run directories")
    p.add_argument("--splits", nargs="+", default=["test", "test_seen", "valid"])
    p.add_argument("--manifest", action="append", default=[], help="NAME=path/to/manifest.jsonl")
    p.add_argument("--models", nargs="+", default=["student", "teacher"])
    p.add_argument("--out", default=str(HERE / "results" / "voice_split_wer"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--by-variant", action="store_true", help="also each voice variant of each split")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for run_dir in args.runs:
        run = load_run(run_dir)
        splits = list(args.splits)
        sizes = {s: len(run.data.dataset(s)) for s in splits}
        for item in args.manifest:
            name, path = item.split("=", 1)
            sizes[name] = add_manifest(run.data, name, Path(path))
            splits.append(name)
        if args.by_variant:
            for split in list(splits):
                for name in add_variant_splits(run.data, split):
                    sizes[name] = len(run.data.dataset(name))
                    splits.append(name)
        bs = run.loaded.spec.stages[-1].batch_size
        for model in args.models:
            if model not in run.models:
                continue
            for split in splits:
                loader = run.data.loader(split, bs, shuffle=False, seed=run.loaded.spec.seed)
                m = run.task.evaluate(run.models[model], loader, run.device)
                rows.append({"run": str(run_dir), "model": model, "split": split, "utterances": sizes[split],
                             "wer": m["wer"], "cer": m["cer"]})
                print(f"{Path(run_dir).name} {model:8s} {split:10s} n={sizes[split]:4d} WER {m['wer']:.4f} "
                      f"CER {m['cer']:.4f}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    meta = {"machine": f"{platform.machine()} 2-core CPU VM, shared", "date": datetime.date.today().isoformat(),
            "commit": commit, "command": "python benchmarks/checks/voice_split_wer.py " + " ".join(sys.argv[1:])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# Seen-voice vs unseen-voice WER", "", f"{meta['machine']}, {meta['date']}, commit {commit}.",
             f"Command: `{meta['command']}`", "", "| run | model | split | utterances | WER | CER |",
             "|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {Path(r['run']).name} | {r['model']} | {r['split']} | {r['utterances']} | "
                     f"{100 * r['wer']:.1f}% | {100 * r['cer']:.1f}% |")
    by = {(r["run"], r["model"], r["split"]): r["wer"] for r in rows}
    ratios = [(run, model, by[(run, model, "test")] / by[(run, model, "test_seen")])
              for (run, model, split) in by if split == "test" and (run, model, "test_seen") in by
              and by[(run, model, "test_seen")] > 0]
    if ratios:
        lines += ["", "| run | model | unseen-voice WER / seen-voice WER (test / test_seen) |", "|---|---|---:|"]
        lines += [f"| {Path(run).name} | {model} | {ratio:.2f} |" for run, model, ratio in ratios]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
