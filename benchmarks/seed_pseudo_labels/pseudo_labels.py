"""Semi-supervised read speech: transcripts for 10% of the training audio, audio only for the rest.

    python benchmarks/seed_pseudo_labels/pseudo_labels.py --plan     # the runs and the expected time, then exit
    python benchmarks/seed_pseudo_labels/pseudo_labels.py            # run (or reuse) them all, write RESULTS.md

Rows (every row of one seed shares that seed's corpus draw of hidden transcripts, ``data.hide_labels``, and the
student's initialisation; the claims are paired by seed):

* ``labelled``: the student on the 10% with transcripts alone (the audio-only 90% is left out);
* ``project`` / ``project_conf``: + pseudo-labels of the other 90% from a project teacher (a larger RNN-T) trained
  on the 10% in the same run, without / with the confidence filter;
* ``whisper`` / ``whisper_conf``: + pseudo-labels from Whisper base (CTranslate2 int8), without / with it;
* ``full``: the student on 100% of the transcripts (the ceiling).

The labelled 10% always keep their references (``pseudo_fraction: 0``). Both test sets are reported: unseen
voices (``test``) and seen voices (``test_seen``), with the pseudo-labels' WER against the hidden transcripts that
each filter setting leaves and the cost of labelling (teacher seconds per utterance, the transcript store's size).
Whisper transcribes the corpus's training audio once: the store is keyed by audio, so every seed and filter
setting after the first reads it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: reuse, stats
import stats  # noqa: E402
from reuse import finished, hashed, run_in_subprocess  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ROWS = {
    "labelled": "10% transcripts alone",
    "project": "+ project teacher pseudo-labels",
    "project_conf": "+ project teacher pseudo-labels, confidence filter",
    "whisper": "+ Whisper base pseudo-labels",
    "whisper_conf": "+ Whisper base pseudo-labels, confidence filter",
    "full": "100% transcripts (ceiling)",
}
#: seconds per optimizer step at batch 16 ("cpu" widths, one thread a run, two runs on two idle cores) on the
#: small read-speech corpus, as benchmarks/seed002_lcmr measured them; Whisper base int8 was measured at 2.6-3.8 s
#: per utterance on the 2-core VM (docs/onnx_whisper_teachers.md)
SECONDS_PER_STEP = {"student": 0.12, "teacher": 0.26}
WHISPER_SECONDS_PER_UTTERANCE = 3.0
FIXED_SECONDS_PER_RUN = 40.0  # start-up, data, evaluation of two test sets (seed002's 25 s for one)


def stage(args: argparse.Namespace, name: str, train: str, steps: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "train": [train], "steps": steps, "batch_size": args.batch_size, "grad_clip": 5.0,
            "optimizer": {"name": "adamw", "lr": 3.0e-3, "weight_decay": 1.0e-3},
            "lr_schedule": {"name": "exponential", "warmup_steps": max(1, steps // 20), "decay_start": 0.6,
                            "min_lr": 1.0e-4},
            "eval": {"every": max(1, steps // 5), "max_batches": 4}, **extra}


def spec(args: argparse.Namespace, row: str, seed: int) -> dict[str, Any]:
    """The spec of one row and seed."""
    if row not in ROWS:
        raise ValueError(f"unknown row '{row}' (rows: {', '.join(ROWS)})")
    data: dict[str, Any] = {"name": "read_speech", "language": "en", "tokenizer": "char",
                            "train_size": args.train_size, "valid_size": args.eval_size,
                            "test_size": args.eval_size, "test_seen_size": args.eval_size}
    if row != "full":
        data["hide_labels"] = round(1.0 - args.labelled, 6)
    student = {"name": "rnnt_lstm", "preset": "exp1_student", "size": args.size}
    sp: dict[str, Any] = {"name": f"pseudo_{row}_s{seed}", "seed": seed, "output_dir": str(args.work),
                          "task": {"name": "rnnt"}, "data": data, "student": student,
                          "trainer": {"threads": args.threads, "log_every": 50, "progress_bar": False},
                          "evaluate": {"split": "test", "extra_splits": ["test_seen"], "models": ["student"]}}
    stages: list[dict[str, Any]] = []
    if row.startswith("project"):
        sp["teacher"] = {"name": "rnnt_lstm", "preset": "exp1_teacher", "size": args.size}
        stages.append(stage(args, "teacher", "teacher", args.teacher_steps))
    elif row.startswith("whisper"):
        sp["teacher"] = {"name": "whisper_ct2", "compute_type": "int8", "cpu_threads": args.threads}
    student_stage = stage(args, "student", "student", args.steps)
    if "teacher" in sp:
        plugin: dict[str, Any] = {"name": "sequence_kd", "teacher": "teacher", "pseudo_fraction": 0.0}
        if args.store is not None:
            plugin["cache_dir"] = str(args.store)
        if row.endswith("_conf"):
            plugin["min_confidence"] = args.min_confidence
        student_stage.update(frozen=["teacher"], plugins=[plugin])
    stages.append(student_stage)
    sp["stages"] = stages
    return sp


def runs(args: argparse.Namespace) -> list[tuple[str, int, dict[str, Any]]]:
    """Every (row, seed, hashed spec) of the benchmark, seeds outermost."""
    return [(row, seed, hashed(spec(args, row, seed))) for seed in args.seeds for row in args.rows]


def plan(args: argparse.Namespace) -> float:
    """Print the runs and their expected time on the 2-core VM; the total in seconds."""
    scale = args.batch_size / 16
    per_row = {}
    for row in args.rows:
        t = FIXED_SECONDS_PER_RUN + args.steps * SECONDS_PER_STEP["student"] * scale
        if row.startswith("project"):
            t += args.teacher_steps * SECONDS_PER_STEP["teacher"] * scale
        per_row[row] = t
    labelling = 0.0
    if any(r.startswith("whisper") for r in args.rows):  # once for the corpus: the store is keyed by audio
        labelling = args.train_size * (1.0 - args.labelled) * WHISPER_SECONDS_PER_UTTERANCE
    print(f"Plan: {len(args.rows)} rows x {len(args.seeds)} seeds (seeds {args.seeds}); read_speech small, "
          f"train_size {args.train_size} ({100 * args.labelled:.0f}% with transcripts), student exp1_student "
          f"({args.size}), {args.steps} steps; project teacher {args.teacher_steps} steps; batch {args.batch_size}")
    for row in args.rows:
        print(f"  {row:14s} {ROWS[row]:50s} {per_row[row] / 60:6.1f} min per seed")
    total = labelling + len(args.seeds) * sum(per_row.values())
    if labelling:
        print(f"  {'(labelling)':14s} {'Whisper base transcribes the audio-only share once':50s} "
              f"{labelling / 60:6.1f} min")
    print(f"  total about {total / 60:.0f} min on one core (from {SECONDS_PER_STEP} s/step at batch 16 and "
          f"{WHISPER_SECONDS_PER_UTTERANCE} s/utterance for Whisper base on the 2-core VM; slower under other load)",
          flush=True)
    return total


def collect(run_dir: Path) -> dict[str, Any]:
    """Both test sets' WER, the pseudo-labels' report (when the run had a labeller) and the run's seconds."""
    results = json.loads((run_dir / "final" / "COMPLETE").read_text(encoding="utf-8"))
    final = results["final"]["student"]
    out: dict[str, Any] = {"test": float(final["test/wer"]), "test_seen": float(final["test_seen/wer"]),
                           "seconds": sum(float(s["seconds"]) for s in results["stages"]), "run_dir": str(run_dir)}
    report = run_dir / "sequence_kd.json"
    if report.exists():
        seqkd = json.loads(report.read_text(encoding="utf-8"))
        out["pseudo"] = {k: seqkd.get(k) for k in ("pseudo_labelled", "unlabelled", "pseudo_label_wer",
                                                   "teacher_seconds_per_utterance", "filters", "transcribed")}
    return out


def store_bytes(store: Path | None) -> int:
    """Size of the transcript store on disk (0 when there is none)."""
    if store is None or not store.exists():
        return 0
    return sum(p.stat().st_size for p in store.glob("*.json"))


def report(res: dict[str, dict[int, dict[str, Any]]], args: argparse.Namespace) -> tuple[list[str], list[stats.Claim]]:
    """The RESULTS.md table and claims from ``res``: row -> seed -> :func:`collect`'s result."""
    lines = ["| row | test WER (unseen voices) | test_seen WER | pseudo-labels kept | pseudo-label WER | "
             "teacher s/utt |", "|---|---:|---:|---:|---:|---:|"]

    def by(row: str, key: str) -> dict[int, float]:
        return {s: r[key] for s, r in res.get(row, {}).items() if r.get(key) is not None}

    for row, label in ROWS.items():
        if row not in res:
            continue
        pseudo = [r["pseudo"] for r in res[row].values() if "pseudo" in r]
        kept = stats.fmt([p["pseudo_labelled"] for p in pseudo], digits=0) if pseudo else "-"
        pwer = stats.fmt([p["pseudo_label_wer"] for p in pseudo], scale=100, digits=2, unit="%") if pseudo else "-"
        cost = stats.fmt([p["teacher_seconds_per_utterance"] for p in pseudo if p.get("transcribed")], digits=3)
        lines.append(f"| {label} | {stats.fmt(by(row, 'test'), 100, 2, '%')} | "
                     f"{stats.fmt(by(row, 'test_seen'), 100, 2, '%')} | {kept} | {pwer} | {cost} |")
    claims: list[stats.Claim] = []
    for split in ("test", "test_seen"):
        base = by("labelled", split)
        for row in ("project", "project_conf", "whisper", "whisper_conf", "full"):
            if row in res and base:
                other = by(row, split)
                claims.append(stats.Claim(
                    source="semi-supervised", text=f"{ROWS[row]} beats 10% alone on {split}",
                    diff=stats.paired(other, base, higher_is_better=False),
                    sides=f"{stats.fmt(other, 100, 2)} vs {stats.fmt(base, 100, 2)}"))
        ceiling, whisper = by("full", split), by("whisper_conf", split) or by("whisper", split)
        seeds = sorted(base.keys() & ceiling.keys() & whisper.keys())
        if seeds:
            closed = [(base[s] - whisper[s]) / (base[s] - ceiling[s]) for s in seeds if base[s] != ceiling[s]]
            relative = [(base[s] - whisper[s]) / base[s] for s in seeds if base[s] > 0]
            lines += ["", f"{split}: Whisper pseudo-labels close {stats.fmt(closed, 100, 1, '%')} of the gap to the "
                          f"ceiling; relative WER change against 10% alone {stats.fmt(relative, 100, 1, '%')} "
                          f"(target: >= 20% better on unseen voices)."]
    return lines, claims


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", action="store_true", help="print the runs and the expected time, then exit")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", choices=tuple(ROWS), default=list(ROWS))
    p.add_argument("--labelled", type=float, default=0.1, help="share of the training audio with transcripts")
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--eval-size", type=int, default=250, help="utterances of valid, test and test_seen")
    p.add_argument("--size", choices=("cpu", "tiny"), default="cpu", help="model size of the presets")
    p.add_argument("--steps", type=int, default=1000, help="student steps")
    p.add_argument("--teacher-steps", type=int, default=1000, help="project teacher steps (on the 10%%)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--min-confidence", type=float, default=-0.5, help="the confidence filter's threshold")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=REPO / "runs" / "pseudo_labels_bench")
    p.add_argument("--store", type=Path, default=None, help="transcript store (default: the project cache's)")
    p.add_argument("--report-only", action="store_true", help="write RESULTS.md from finished runs only")
    p.add_argument("--rerun", action="store_true")
    args = p.parse_args(argv)
    if not 0 < args.labelled < 1:
        p.error("--labelled must be in (0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plan:
        plan(args)
        return 0
    t0 = time.time()
    res: dict[str, dict[int, dict[str, Any]]] = {}
    for row, seed, sp in runs(args):
        found = finished(args.work, sp["name"])
        if found is None and args.report_only:
            continue
        run_dir = found if found is not None and not args.rerun else run_in_subprocess(sp, args.work, args.threads)
        res.setdefault(row, {})[seed] = collect(run_dir)
    lines, claims = report(res, args)
    header = stats.measured_header(
        "Semi-supervised read speech: 10% transcripts + pseudo-labels", dt.date.today().isoformat(), commit(),
        f"{len(args.seeds)} seeds, {args.threads} thread(s) a run, {time.time() - t0:.0f} s wall",
        " ".join(["python", "benchmarks/seed_pseudo_labels/pseudo_labels.py", *(argv or sys.argv[1:])]))
    store = args.store
    body = header + lines + ["", f"Transcript store: {store_bytes(store) / 1e6:.2f} MB." if store else "", ""]
    body += stats.claims_table(claims, scale=100, digits=2, unit=" pp")
    (HERE / "RESULTS.md").write_text("\n".join(body) + "\n", encoding="utf-8")
    (HERE / "results.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    print(f"wrote {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
