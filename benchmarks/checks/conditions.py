"""Recording conditions: finished runs' models on their test sentences as a microphone could hear them.

Every corpus here is synthesised, each utterance starting and ending on its first and last sound. A device hears
silence around an utterance, quiet and loud speakers, telephone lines, noise, rooms and fast or slow talkers. This
check re-records a run's test split under each condition with the data layer's own augmentation
(:func:`compressor.data.augment.augment`, seeded by the utterance's index, so every run and model hears the same
audio) and measures each model's WER on it, beside the unchanged audio (``clean``)::

    python benchmarks/checks/conditions.py runs/rnnt_lcmr --out benchmarks/checks/results/conditions
    python benchmarks/checks/conditions.py RUN_DIR --conditions clean silence --limit 100

A folder argument stands for every finished run in it (one per seed). Prints a markdown table: per model and
condition the WER (mean ± std over runs) and its ratio to the clean WER (mean over runs); ``--out`` writes
``conditions.md`` and ``conditions.json``. ``clean`` is the split itself through the same manifest path, so its
WER equals the run's own test WER (the check of the path).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: stats, reuse
import stats  # noqa: E402
from reuse import finished_in  # noqa: E402

#: name -> (augmentation arguments, what a reader sees); ``clean`` is the audio as it is
CONDITIONS: dict[str, tuple[dict[str, Any], str]] = {
    "clean": ({}, "the test audio as it is"),
    "silence": ({"silence": (0.5, 0.5)}, "0.5 s of silence before and after, at the recording's noise floor"),
    "quiet": ({"gain_db": (-20.0, -20.0)}, "20 dB quieter"),
    "telephone": ({"band_limit": 1.0}, "a telephone line: 8 kHz, 300-3400 Hz, back to 16 kHz"),
    "noise": ({"noise_snr": (10.0, 10.0)}, "white noise at 10 dB SNR"),
    "reverb": ({"reverb": 1.0}, "a generated room (RT60 0.15-0.6 s)"),
    "fast": ({"speeds": [1.15]}, "15% faster (speed perturbation: tempo and pitch)"),
    "slow": ({"speeds": [0.87]}, "13% slower"),
}


def finished_runs(paths: list[Path]) -> list[Path]:
    """Run directories (``final/COMPLETE``) among ``paths`` and the folders they name."""
    out: list[Path] = []
    for p in paths:
        if (p / "final" / "COMPLETE").is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(finished_in(p))
        else:
            raise SystemExit(f"conditions: {p} is neither a finished run nor a folder of them")
    if not out:
        raise SystemExit(f"conditions: no finished run in {', '.join(map(str, paths))}")
    return out


def rerecord(utts: list[Any], condition: str, folder: Path, sample_rate: int = 16000) -> Path:
    """Write ``utts`` as heard under ``condition`` into ``folder``; returns its NeMo manifest."""
    from compressor.data.audio import load_audio
    from compressor.data.augment import AugmentArgs, augment

    args = AugmentArgs(**CONDITIONS[condition][0])
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, u in enumerate(utts):
        wave = load_audio(u.audio, sample_rate, offset=u.offset, duration=u.duration)
        if args.active():
            wave = augment(wave, args, seed=i, sample_rate=sample_rate)
        path = folder / f"{i:06d}.wav"
        sf.write(path, wave.numpy(), sample_rate, subtype="FLOAT")
        lines.append(json.dumps({"audio_filepath": str(path.resolve()), "duration": wave.numel() / sample_rate,
                                 "text": u.text}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def measure_run(run_dir: Path, conditions: list[str], work: Path, split: str = "test", limit: int | None = None,
                models: list[str] | None = None, threads: int | None = None) -> dict[str, dict[str, float]]:
    """{model: {condition: WER}} of one finished run."""
    from compressor.data.compat import retokenize
    from compressor.run.finished import load_run

    run = load_run(run_dir, threads, models=models or None, splits=[split])
    datasets = getattr(run.data, "datasets", {}) or {}
    if split not in datasets:
        raise SystemExit(f"conditions: {run_dir} has no split '{split}'")
    utts = list(datasets[split].utts)[:limit]
    registry = run.plugins.registry
    info = run.data.info
    batch = run.loaded.spec.stages[-1].batch_size
    out: dict[str, dict[str, float]] = {}
    for condition in conditions:
        manifest = rerecord(utts, condition, work / condition)
        data_args = {"train": str(manifest), "valid": str(manifest), "test": str(manifest),
                     "frontend": info.get("frontend", "nemo"), "language": info.get("language", "en"),
                     "normalize": info.get("normalize_type") or "none"}
        args = registry.parse_args("dataset", "nemo_manifest", data_args, ("conditions", condition))
        module = registry.get("dataset", "nemo_manifest").factory(args, cache_dir=work / "cache", seed=0)
        retokenize(module, run.data.tokenizer, str(info.get("language", "en")), f"conditions.{condition}", ["test"])
        for name, model in run.models.items():
            model.eval()
            metrics = run.task.evaluate(model, module.loader("test", batch, shuffle=False, seed=0), run.device)
            out.setdefault(name, {})[condition] = float(metrics["wer"])
            print(f"  {run_dir.name} {name:14s} {condition:10s} WER {metrics['wer']:.4f}", flush=True)
    return out


def table(results: dict[str, dict[str, dict[str, float]]], conditions: list[str]) -> str:
    """Markdown: a row per model, a column per condition (WER mean ± std over runs, and x clean WER)."""
    models = list(dict.fromkeys(m for r in results.values() for m in r))
    head = "| model | runs | " + " | ".join(f"{c}" for c in conditions) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(conditions)]
    for m in models:
        cells = []
        for c in conditions:
            per = {i: r[m][c] for i, r in enumerate(results.values()) if c in r.get(m, {})}
            ratio = {i: r[m][c] / r[m]["clean"] for i, r in enumerate(results.values())
                     if c in r.get(m, {}) and r[m].get("clean")}
            text = stats.fmt(per, 100, 1, "%") if per else "-"
            if ratio and c != "clean":
                text += f" ({sum(ratio.values()) / len(ratio):.2f}x)"
            cells.append(text)
        runs = sum(1 for r in results.values() if m in r)
        lines.append(f"| {m} | {runs} | " + " | ".join(cells) + " |")
    legend = "; ".join(f"`{c}`: {CONDITIONS[c][1]}" for c in conditions)
    return "\n".join([*lines, "", f"WER % mean ± std over runs (x: the mean ratio to clean). {legend}."]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished run directories, or folders of them")
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="only the split's first N utterances")
    p.add_argument("--models", nargs="+", default=None, help="default: every model of the run")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--work", type=Path, default=None, help="where the re-recorded audio goes (default: a temp dir)")
    p.add_argument("--out", type=Path, default=None, help="write conditions.md and conditions.json here")
    args = p.parse_args(argv)
    conditions = ["clean", *[c for c in args.conditions if c != "clean"]]
    runs = finished_runs(args.runs)
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="conditions-") as tmp:
        work = args.work or Path(tmp)
        for i, run_dir in enumerate(runs):
            results[str(run_dir)] = measure_run(run_dir, conditions, work / f"run{i}", args.split, args.limit,
                                                args.models, args.threads)
    text = table(results, conditions)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "conditions.md").write_text(text, encoding="utf-8")
        (args.out / "conditions.json").write_text(json.dumps({"conditions": {c: CONDITIONS[c][1] for c in conditions},
                                                              "split": args.split, "limit": args.limit,
                                                              "results": results}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
