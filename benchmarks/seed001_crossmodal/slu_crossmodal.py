"""Reproduce seed 001's (Cho et al.) Tables 1 and 2 on the synthetic commands corpus, and time the teacher cache.

    python benchmarks/seed001_crossmodal/slu_crossmodal.py --plan  # print the runs and the expected time, do nothing
    python benchmarks/seed001_crossmodal/slu_crossmodal.py                 # the full benchmark
    python benchmarks/seed001_crossmodal/slu_crossmodal.py --report-only   # tabulate the runs that have finished

Pipeline (every step a ``compressor run`` of a spec derived from ``specs/slu_crossmodal.yaml``):

1. **Preparation, once** (seed 0): fine-tune all-MiniLM-L6-v2 on the whole set of commands transcripts twice
   (``teacher``: FC on [CLS]; ``professor``: FC per token + max-pooling) and pre-train the student's acoustic
   module with CTC on read speech only -- like the paper's LibriSpeech-pre-trained module, it never sees the
   commands audio, so the data-shortage scenarios restrict the speech the student learns intents from and
   nothing else. The teachers' train and test errors are reported as the paper's Sec. 4.2.1 does.
2. **SLU runs**: the student (acoustic module frozen) trained on intents for ``--epochs`` epochs, best
   validation checkpoint, test error rate. Rows: the baseline (no KD); who teaches (teacher gamma = 0,
   professor gamma = 1, hybrid gamma = batch error, Eq. 4); D = MSE or smooth-L1 ("MAE"); beta_t = 0.1, 0.5,
   err (Eq. 5a), exp (5b), tri (5c); alpha_t = 1 - beta_t. Scenarios: the whole training split, 10%
   (``--subsets-10`` disjoint random subsets) and 1% (``--subsets-1``), the test split fixed. Each cell is the
   mean ± std over ``--seeds`` runs: run k uses seed k and subset k. A run "fails to converge" (the paper's x)
   when the student's best validation accuracy stays below twice chance (2/31). Teacher logits are cached
   (one cache shared by all runs: the teacher weights are the same).
3. **Cache timing**, side by side in one process after the table runs: whole-data SLU epochs of the student
   alone, with cached-teacher KD and with uncached KD (teacher run on every batch), ``--timing-repeats``
   alternating repeats; epoch times from the metrics log (epochs 2 onwards, so the cache is filled).

Writes ``slu_crossmodal_results.json`` (every number) and ``slu_crossmodal.png`` into ``--out`` (default
``results/`` beside this script) and ``RESULTS.md`` beside this script (Tables 1 and 2, the teachers, the claims
judged by ``benchmarks/stats.py``, the cache ratios); ``--render`` rewrites RESULTS.md from the JSON alone.
Runs go to ``--work`` (default ``runs/slu_crossmodal_bench``); finished runs are reused, so an interrupted
benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: reuse, stats
import stats  # noqa: E402
from reuse import finished, hashed, write_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BASE_SPEC = REPO / "specs" / "slu_crossmodal.yaml"
CHANCE = 1 / 31

SCHEDULES: dict[str, dict[str, Any]] = {
    "0.1": {"name": "constant", "value": 0.1},
    "0.5": {"name": "constant", "value": 0.5},
    "err": {"name": "error_rate"},
    "exp": {"name": "exp_decay"},
    "tri": {"name": "triangular"},
}
WHO = {"teacher": "Distill-Teacher (γ = 0)", "professor": "Distill-Professor (γ = 1)",
       "hybrid": "Distill-Hybrid (γ = err)"}
LOSS = {"mse": "MSE", "smooth_l1": "MAE"}


def table_rows() -> dict[str, list[tuple[str, str | None, str | None, str | None]]]:
    """Scenario -> rows (key, who, loss, beta) of Tables 1 and 2; who None is the baseline (no KD)."""
    whole = [("baseline", None, None, None)]
    for who in WHO:
        settings = [("mse", "0.1"), ("mse", "0.5"), ("mse", "err"), ("smooth_l1", "err")]  # Table 1
        if who != "professor":  # Table 2's schedules (the professor's exp/tri cells are left out: time)
            settings += [("smooth_l1", "exp"), ("smooth_l1", "tri")]
        for loss, beta in settings:
            whole.append((f"{who}-{loss}-{beta}", who, loss, beta))
    short = [("baseline", None, None, None)]
    for who in ("teacher", "hybrid"):
        for loss, beta in (("mse", "err"), ("smooth_l1", "err"), ("smooth_l1", "exp"), ("smooth_l1", "tri")):
            short.append((f"{who}-{loss}-{beta}", who, loss, beta))
    tiny = [r for r in short if r[1] != "hybrid"]
    return {"whole": whole, "10%": short, "1%": tiny}


# ------------------------------------------------------------------------------------------------
# Specs
# ------------------------------------------------------------------------------------------------


def base() -> dict[str, Any]:
    return yaml.safe_load(BASE_SPEC.read_text(encoding="utf-8"))


def _data(args: argparse.Namespace, scenario: str = "whole", index: int = 0) -> dict[str, Any]:
    data = dict(base()["data"])
    data.update(train_size=args.train_size)
    if scenario != "whole":
        fraction, count = (0.1, args.subsets_10) if scenario == "10%" else (0.01, args.subsets_1)
        data["subset"] = {"fraction": fraction, "count": count, "index": index % count, "seed": 0}
    return data


def prep_spec(args: argparse.Namespace) -> dict[str, Any]:
    spec = base()
    stages = {s["name"]: s for s in spec["stages"]}
    spec.update(name="slu_bench_prep", seed=0, output_dir=str(args.work), data=_data(args))
    spec["student"] = {"name": "slu_student", "size": args.size}
    spec["trainer"] = {"threads": args.threads, "progress_bar": False}
    pre = copy.deepcopy(stages["asr_read_speech"])
    pre["epochs"] = args.asr_epochs
    teacher, professor = copy.deepcopy(stages["teacher"]), copy.deepcopy(stages["professor"])
    teacher["epochs"] = professor["epochs"] = args.teacher_epochs
    spec["stages"] = [teacher, professor, pre]
    spec["evaluate"] = {"split": "test", "models": ["teacher", "professor"]}
    spec.pop("export", None)
    return spec


def slu_spec(args: argparse.Namespace, prep: Path, scenario: str, seed: int, who: str | None, loss: str | None,
             beta: str | None, epochs: int | None = None, cache: bool = True, name: str = "slu_bench"
             ) -> dict[str, Any]:
    spec = base()
    slu = copy.deepcopy(next(s for s in spec["stages"] if s["name"] == "slu"))
    slu["epochs"] = epochs or {"whole": args.epochs, "10%": args.epochs_10, "1%": args.epochs_1}[scenario]
    plugins = [p for p in slu["plugins"] if p["name"] == "layer_freezing"]
    if who is not None:
        kd: dict[str, Any] = {"name": "logit_kd", "loss": loss, "weight": SCHEDULES[str(beta)],
                              "alpha": "complement"}
        if who == "teacher":
            kd["teacher"] = "teacher"
        elif who == "professor":
            kd["teacher"] = "professor"
        else:  # hybrid: Eq. 4 with gamma = the batch error
            kd.update(teacher="teacher", professor="professor", gamma={"name": "error_rate"}, mix="distances")
        if cache:
            kd.update(cache=True, cache_dir=str(args.work / "teacher_cache"))
        plugins.append(kd)
    slu["plugins"] = plugins
    final = prep / "final"
    spec.update(name=name, seed=seed, output_dir=str(args.work), data=_data(args, scenario, seed))
    # only the teachers a run uses are built (each is a 22.7M-parameter model to load)
    teacher = {**spec["teacher"], "checkpoint": str(final / "teacher.pt")}
    professor = {**spec["models"]["professor"], "checkpoint": str(final / "professor.pt")}
    spec.pop("teacher")
    spec["models"] = {}
    if who in ("teacher", "hybrid"):
        spec["teacher"] = teacher
    if who in ("professor", "hybrid"):
        spec["models"]["professor"] = professor
    slu["frozen"] = [m for m in ("teacher", "professor") if m in spec or m in spec["models"]]
    spec["student"] = {"name": "slu_student", "size": args.size, "checkpoint": str(final / "student.pt")}
    spec["trainer"] = {"threads": args.threads, "progress_bar": False}
    spec["stages"] = [slu]
    spec["evaluate"] = {"split": "test", "models": ["student"]}
    spec.pop("export", None)
    return spec


# ------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------


def run_one(spec: dict[str, Any], args: argparse.Namespace, reuse: bool = True) -> Path | dict[str, Any] | None:
    """Run (or reuse) one spec in this process; its name carries a hash of its settings, so only identical runs
    are reused. Returns the run directory, ``{"failed": message}`` when training broke down (a non-finite
    loss), or None with ``--report-only`` when the run has not been done."""
    from compressor.run.engine import run_spec

    spec = hashed(spec)
    name = spec["name"]
    failed = args.work / "failed" / f"{name}.json"
    found = finished(args.work, name)
    if reuse and found is not None:
        return found
    if reuse and failed.exists():
        return json.loads(failed.read_text())
    if args.report_only:
        return None
    path = write_spec(args.work, spec)
    t0 = time.time()
    try:
        run_dir = run_spec(path)
    except Exception as e:  # a collapse (non-finite loss) is a result here: the paper's "failure of convergence"
        cause = e.__cause__ or e
        message = f"{type(cause).__name__}: {cause}"
        if not isinstance(cause, FloatingPointError):
            raise
        failed.parent.mkdir(parents=True, exist_ok=True)
        failed.write_text(json.dumps({"failed": message}))
        print(f"  FAILED {name}: {message}", flush=True)
        return {"failed": message}
    print(f"  done {name} in {time.time() - t0:.0f} s", flush=True)
    return Path(run_dir)


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if x]


def collect(run: Path | dict[str, Any]) -> dict[str, Any]:
    """Test error, best validation accuracy, steps and whether the run converged."""
    if isinstance(run, dict):  # training broke down
        return {"test_error": None, "best_valid_accuracy": 0.0, "converged": False, "failed": run["failed"]}
    results = json.loads((run / "final" / "COMPLETE").read_text(encoding="utf-8"))
    final = results["final"]["student"]
    valid = [r["valid/accuracy"] for r in _records(run) if r.get("type") == "eval"]
    best = max(valid) if valid else 0.0
    return {"test_error": 100.0 * float(final["test/error_rate"]), "best_valid_accuracy": best,
            "converged": best >= 2 * CHANCE, "steps": int(results["stages"][0]["steps"]), "run": str(run)}


def epoch_seconds(run_dir: Path) -> list[float]:
    """Training seconds of each epoch, from the metrics' step clock (evaluation between epochs excluded): the
    span from an epoch's first to its last step, scaled by n / (n - 1) for its n steps."""
    steps = [r for r in _records(run_dir) if "type" not in r and r.get("stage_index") == 0]
    out = []
    for e in sorted({int(r["epoch"]) for r in steps}):
        times = [float(r["time"]) for r in steps if int(r["epoch"]) == e]
        if len(times) > 1:
            out.append((times[-1] - times[0]) * len(times) / (len(times) - 1))
    return out


def teacher_errors(prep: Path) -> dict[str, dict[str, float]]:
    """Train and test error rates of the fine-tuned teacher and professor (seed 001 Sec. 4.2.1)."""
    from compressor.run.finished import evaluate_run

    cache = prep / "teacher_errors.json"
    if cache.exists():
        return json.loads(cache.read_text())
    raw = {s: evaluate_run(prep, split=s, models=["teacher", "professor"]) for s in ("train", "test")}
    errors = {m: {s: 100.0 * raw[s][m]["error_rate"] for s in ("train", "test")} for m in ("teacher", "professor")}
    cache.write_text(json.dumps(errors))
    return errors


def acoustic_quality(prep: Path) -> dict[str, float]:
    rows = [r for r in _records(prep) if r.get("type") == "eval" and r.get("stage") == "asr_read_speech"]
    return {"read_speech_valid_wer": 100 * rows[-1]["valid/wer"], "read_speech_valid_cer": 100 * rows[-1]["valid/cer"]
            } if rows else {}


def run_table(args: argparse.Namespace, prep: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    data: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for scenario, rows in table_rows().items():
        data[scenario] = {}
        only_report = argparse.Namespace(**{**vars(args), "report_only": True})
        for key, who, loss, beta in rows:
            runs = []
            for seed in range(args.seeds):
                run = run_one(slu_spec(args, prep, scenario, seed, who, loss, beta),
                              args if scenario in args.scenarios else only_report)
                if run is not None:
                    runs.append(collect(run))
            if runs:
                data[scenario][key] = runs
                print(f"[{scenario}] {key}: test error {cell(runs)}", flush=True)
    return data


def run_timing(args: argparse.Namespace, prep: Path) -> dict[str, Any]:
    """Epoch times of student-only, cached-KD and uncached-KD training, alternating, in one process."""
    kinds = {"student_only": (None, True), "kd_cached": ("teacher", True), "kd_uncached": ("teacher", False)}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for rep in range(args.timing_repeats):
        for kind, (who, cache) in kinds.items():
            spec = slu_spec(args, prep, "whole", 100 + rep, who, "smooth_l1" if who else None,
                            "exp" if who else None, epochs=args.timing_epochs, cache=cache, name=f"timing_{kind}")
            run_dir = run_one(spec, args, reuse=False)
            assert isinstance(run_dir, Path), f"timing run {kind} failed: {run_dir}"
            times[kind] += epoch_seconds(run_dir)[1:]  # epoch 1 fills the cache
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"epoch_seconds": times, "median": med,
            "cached_over_student_only": med["kd_cached"] / med["student_only"],
            "cached_over_uncached": med["kd_cached"] / med["kd_uncached"],
            "uncached_over_student_only": med["kd_uncached"] / med["student_only"]}


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def errors(runs: list[dict[str, Any]] | None) -> dict[int, float]:
    """Seed -> test error (%) of the runs that finished (run k is seed k; a collapsed run has none)."""
    return {k: float(r["test_error"]) for k, r in enumerate(runs or []) if r["test_error"] is not None}


def _ms(runs: list[dict[str, Any]]) -> tuple[float, float]:
    """Mean and std (0 for one run) of the test error, for the plot's bars."""
    sp = stats.spread(errors(runs))
    return sp.mean, (sp.std or 0.0)


def cell(runs: list[dict[str, Any]] | None) -> str:
    """``mean ± std (n = k)`` of the shared statistics, with ``× n`` when n runs failed to converge (the
    paper's ×)."""
    if not runs:
        return ""
    errs = errors(runs)
    failed = sum(not r["converged"] for r in runs)
    mark = f" ×{failed}" if failed else ""
    return ("×" if not errs else stats.fmt(errs, digits=2)) + mark


KD = "teacher-smooth_l1-exp"  # the paper's choice under shortage: teacher, MAE, Exp.


def claims(data: dict[str, dict[str, list[dict[str, Any]]]]) -> list[stats.Claim]:
    """The paper's claims, each on paired differences by seed (run k of every row shares seed k and subset k);
    a positive difference is what the claim says. Claims whose runs have not finished are not measured."""
    out: list[stats.Claim] = []

    def e(s: str, k: str) -> dict[int, float]:
        return errors(data.get(s, {}).get(k))

    def per_seed(f: Any, *rows: dict[int, float]) -> dict[int, float]:
        seeds = set.intersection(*(set(r) for r in rows)) if rows else set()
        return {k: f(*(r[k] for r in rows)) for k in sorted(seeds)}

    def sides(*parts: tuple[str, dict[int, float]]) -> str:
        return "; ".join(f"{label} {stats.fmt(v, digits=2)}" for label, v in parts)

    def add(source: str, text: str, diffs: dict[int, float], side: str, note: str = "") -> None:
        out.append(stats.Claim(source, text, stats.interval(diffs), side, note))

    for s in ("whole", "10%", "1%"):
        kd_keys = [k for k in data.get(s, {}) if k != "baseline" and e(s, k)]
        if kd_keys and e(s, "baseline"):
            best = min(kd_keys, key=lambda k: stats.spread(e(s, k)).mean)
            add("Table 1" if s == "whole" else "Table 2", f"KD lowers the error ({s}; the best KD setting)",
                per_seed(lambda b, x: b - x, e(s, "baseline"), e(s, best)),
                sides(("baseline", e(s, "baseline")), (best, e(s, best))),
                f"best of {len(kd_keys)} settings by mean (the choice is not corrected for)")
    for s in ("whole", "10%", "1%"):
        add("Table 2", f"KD (teacher, MAE, Exp.) lowers the error ({s})",
            per_seed(lambda b, x: b - x, e(s, "baseline"), e(s, KD)),
            sides(("baseline", e(s, "baseline")), ("KD", e(s, KD))))
    gains = {s: per_seed(lambda b, x: b - x, e(s, "baseline"), e(s, KD)) for s in ("whole", "10%", "1%")}
    add("Table 2", "KD helps more under shortage (gain at 10% and at 1% above the whole-data gain; teacher, MAE, "
        "Exp.; the smaller margin per seed)", per_seed(lambda w, t, o: min(t - w, o - w), *gains.values()),
        sides(*((f"gain {s}", g) for s, g in gains.items())))
    for s in ("10%", "1%"):
        sched = {b: e(s, f"teacher-smooth_l1-{b}") for b in ("err", "exp", "tri")}
        add("Table 2", f"Exp. decay is the best schedule under shortage ({s}; teacher, MAE; margin to the better "
            "of err and Tri.)", per_seed(lambda er, ex, tr: min(er, tr) - ex, *sched.values()),
            sides(*sched.items()))
    for s in ("10%", "1%"):
        mse, mae = data.get(s, {}).get("teacher-mse-err"), data.get(s, {}).get("teacher-smooth_l1-err")
        failed = {n: sum(not r["converged"] for r in rows or []) for n, rows in (("MSE", mse), ("MAE", mae))}
        add("Table 2", f"MAE is steadier than MSE under shortage ({s}; teacher, β = err: lower error)",
            per_seed(lambda a, b: a - b, errors(mse), errors(mae)),
            sides(("MSE", errors(mse)), ("MAE", errors(mae))),
            f"failed to converge: MSE {failed['MSE']}, MAE {failed['MAE']}")
    pairs = [("mse", "err"), ("smooth_l1", "err"), ("smooth_l1", "exp"), ("smooth_l1", "tri")]
    rows = [(e("10%", f"hybrid-{loss}-{b}"), e("10%", f"teacher-{loss}-{b}")) for loss, b in pairs]
    if all(h and t for h, t in rows):
        add("Table 2", "The teacher teaches better than the hybrid under shortage (10%; hybrid − teacher error, "
            "mean of the 4 settings)", per_seed(lambda *v: statistics.fmean(
                v[i] - v[i + 1] for i in range(0, len(v), 2)), *(x for pair in rows for x in pair)),
            "; ".join(f"{LOSS[loss]}/{b}: hybrid {stats.fmt(h, digits=2)} vs teacher {stats.fmt(t, digits=2)}"
                      for (loss, b), (h, t) in zip(pairs, rows)))
    t1 = [("mse", "0.1"), ("mse", "0.5"), ("mse", "err"), ("smooth_l1", "err")]
    rows = [(e("whole", f"professor-{loss}-{b}"), e("whole", f"teacher-{loss}-{b}")) for loss, b in t1]
    if all(p and t for p, t in rows):
        add("Table 1", "The professor does not necessarily teach best (whole data; professor − teacher error in "
            "its worst of the 4 Table 1 settings)", per_seed(lambda *v: max(
                v[i] - v[i + 1] for i in range(0, len(v), 2)), *(x for pair in rows for x in pair)),
            "; ".join(f"{LOSS[loss]}/{b}: professor {stats.fmt(p, digits=2)} vs teacher {stats.fmt(t, digits=2)}"
                      for (loss, b), (p, t) in zip(t1, rows)))
    return out


def results_page(payload: dict[str, Any]) -> str:
    """RESULTS.md from the results JSON: tables with their provenance, the claims under the shared rule."""
    a, machine, data = payload["args"], payload["machine"], payload["table"]
    teachers, acoustic, timing = payload["teachers"], payload.get("acoustic", {}), payload.get("timing")
    lines = ["# Seed 001 (Cho et al.): cross-modal KD for SLU on the synthetic commands corpus", ""]
    lines += stats.measured_header(
        "Test error (%), Tables 1 and 2", str(machine["date"]), str(machine["commit"]),
        f"{machine['machine']}; torch {machine['torch']}", str(machine.get("command", "")),
        payload.get("caveats", ["Tabulated with `--report-only` from runs trained at commit 6e899d5 on 2026-11-30 "
                                "(18:41-21:45 UTC); teacher logits cached; both teachers are perfect on the "
                                "synthetic commands, so the professor and the hybrid's γ carry little here."]))
    lines += [f"Setup: commands corpus, {a['train_size']} training utterances (31 intents), test split fixed; student "
              f"`slu_student` size `{a['size']}` (acoustic module pre-trained with CTC on read speech for "
              f"{a['asr_epochs']} epochs, then frozen; read-speech valid WER "
              f"{acoustic.get('read_speech_valid_wer', 0):.1f}%, CER {acoustic.get('read_speech_valid_cer', 0):.1f}%); "
              f"teachers: all-MiniLM-L6-v2 fine-tuned {a['teacher_epochs']} epochs on all transcripts; SLU stage "
              f"{a['epochs']} / {a['epochs_10']} / {a['epochs_1']} epochs (whole / 10% / 1%), batch 32, AdamW 2e-3, "
              f"cosine; α_t = 1 − β_t; run k: seed k, subset k; × n = n runs failed to converge (best validation "
              "accuracy below 2/31).", ""]
    lines += ["## Teachers (Sec. 4.2.1)", "", "| model | train error % | test error % |", "|---|---:|---:|"]
    for m in ("teacher", "professor"):
        lines.append(f"| {m} | {teachers[m]['train']:.2f} | {teachers[m]['test']:.2f} |")
    whole = data.get("whole", {})
    lines += ["", "## Table 1: whole data", "", "| test error % | β = 0.1, MSE | β = 0.5, MSE | β = err, MSE | "
              "β = err, MAE |", "|---|---:|---:|---:|---:|",
              f"| Baseline (no KD) | {cell(whole.get('baseline'))} | | | |"]
    for who, label in WHO.items():
        cells = [cell(whole.get(f"{who}-{loss}-{b}")) for loss, b in (("mse", "0.1"), ("mse", "0.5"), ("mse", "err"),
                                                                        ("smooth_l1", "err"))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Table 2: data shortage and schedules", "",
              "| test error % | MSE (err) | MAE + err | MAE + Exp. | MAE + Tri. |", "|---|---:|---:|---:|---:|"]
    for scenario, title in (("whole", "Whole data"), ("10%", f"Data shortage #1: 10% ({a['subsets_10']} subsets)"),
                            ("1%", f"Data shortage #2: 1% ({a['subsets_1']} subsets)")):
        part = data.get(scenario, {})
        n_train = round(int(a["train_size"]) * {"whole": 1, "10%": 0.1, "1%": 0.01}[scenario])
        lines.append(f"| **{title}**, {n_train} utterances | | | | |")
        lines.append(f"| Baseline (no KD) | {cell(part.get('baseline'))} | | | |")
        for who, label in WHO.items():
            if not any(k.startswith(who) for k in part):
                continue
            cells = [cell(part.get(f"{who}-{loss}-{b}")) for loss, b in (("mse", "err"), ("smooth_l1", "err"),
                                                                           ("smooth_l1", "exp"), ("smooth_l1", "tri"))]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    judged = claims(data)
    earlier = {c["claim"]: c["here"] for c in payload.get("claims", []) if "here" in c}
    stats.note_earlier(judged, earlier, "earlier rule: the means alone")
    lines += ["", "## The paper's claims", ""] + stats.claims_table(judged, digits=2, unit=" pts")
    if timing is not None:
        med = timing["median"]
        lines += ["", "## Teacher-output cache: epoch time, side by side", "",
                  f"Whole-data SLU epochs (epochs 2-{a['timing_epochs']} of {a['timing_repeats']} alternating "
                  f"repeats; median seconds per epoch, evaluation excluded; same machine and date):", "",
                  "| training | s / epoch | ratio |", "|---|---:|---|",
                  f"| student only | {med['student_only']:.2f} | 1 |",
                  f"| KD, cached teacher logits | {med['kd_cached']:.2f} | "
                  f"{timing['cached_over_student_only']:.3f} × student only (target ≤ 1.15) |",
                  f"| KD, teacher run on every batch | {med['kd_uncached']:.2f} | "
                  f"{timing['uncached_over_student_only']:.3f} × student only |", "",
                  f"Cached KD / uncached KD: {timing['cached_over_uncached']:.3f}."]
    return "\n".join(lines) + "\n"


def render(out: Path) -> Path:
    """Write RESULTS.md beside this script from ``out``'s results JSON (no training)."""
    payload = json.loads((out / "slu_crossmodal_results.json").read_text(encoding="utf-8"))
    page = HERE / "RESULTS.md"
    page.write_text(results_page(payload), encoding="utf-8")
    return page


def write_report(args: argparse.Namespace, prep: Path, data: dict[str, Any], timing: dict[str, Any] | None,
                 wall_minutes: float) -> str:
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    machine = {"machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs shared with other jobs, "
                          f"{args.threads} torch thread(s), nice 10)",
               "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
               "torch": torch.__version__, "wall_minutes": round(wall_minutes, 1),
               "command": "python " + " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
    payload = {"machine": machine, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "teachers": teacher_errors(prep), "acoustic": acoustic_quality(prep), "table": data, "timing": timing,
               "caveats": [], "claims": [c.as_dict() for c in claims(data)]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "slu_crossmodal_results.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    plot(args, data, timing)
    return render(args.out).read_text(encoding="utf-8")


def plot(args: argparse.Namespace, data: dict[str, Any], timing: dict[str, Any] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4 if timing else 3, figsize=(20 if timing else 16, 5.5),
                             gridspec_kw={"width_ratios": [3, 1.6, 1.2, 0.9] if timing else [3, 1.6, 1.2]})
    for ax, scenario in zip(axes, ("whole", "10%", "1%")):
        keys = list(data.get(scenario, {}))
        if not keys:
            ax.set_title(f"{scenario}: not run yet")
            continue
        means = [_ms(data[scenario][k])[0] for k in keys]
        runs = sorted({len(data[scenario][k]) for k in keys})
        stds = [_ms(data[scenario][k])[1] for k in keys]
        colors = ["0.5" if k == "baseline" else {"teacher": "C0", "professor": "C1", "hybrid": "C2"}[k.split("-")[0]]
                  for k in keys]
        ax.bar(range(len(keys)), means, yerr=stds, color=colors, capsize=2)
        ax.axhline(means[0], color="0.3", lw=0.8, ls="--")
        labels = ["baseline" if k == "baseline" else f"{k.split('-')[0][:4]} {LOSS[k.split('-')[1]]} {k.split('-')[2]}"
                  for k in keys]
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(labels, rotation=75, fontsize=7)
        ax.set_title(f"{scenario} ({'/'.join(map(str, runs))} runs each)")
        ax.set_ylabel("test error % (mean ± std)")
    if timing:
        ax = axes[3]
        med = timing["median"]
        ax.bar(range(3), [med["student_only"], med["kd_cached"], med["kd_uncached"]], color=["0.5", "C0", "C3"])
        ax.set_xticks(range(3))
        ax.set_xticklabels(["student\nonly", "KD\ncached", "KD\nuncached"], fontsize=8)
        ax.set_ylabel("seconds per epoch (median)")
        ax.set_title("teacher-output cache")
    fig.suptitle("Seed 001 on synthetic commands: logit KD from a text teacher into a speech student")
    fig.tight_layout()
    fig.savefig(args.out / "slu_crossmodal.png", dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def count_runs(args: argparse.Namespace) -> int:
    return sum(len(rows) for rows in table_rows().values()) * args.seeds


def plan(args: argparse.Namespace) -> None:
    n = count_runs(args)
    print(f"preparation: teacher + professor ({args.teacher_epochs} epochs each), acoustic CTC pre-training "
          f"({args.asr_epochs} epochs of read speech)")
    for scenario, rows in table_rows().items():
        print(f"  {scenario}: {len(rows)} rows x {args.seeds} runs")
    print(f"{n} SLU runs of {args.epochs} / {args.epochs_10} / {args.epochs_1} epochs (whole / 10% / 1%); "
          f"timing: 3 x {args.timing_repeats} runs of {args.timing_epochs} epochs")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=8, help="SLU epochs per run on the whole training split")
    p.add_argument("--epochs-10", type=int, default=40, help="SLU epochs per run on a 10%% subset")
    p.add_argument("--epochs-1", type=int, default=80, help="SLU epochs per run on a 1%% subset")
    p.add_argument("--train-size", type=int, default=1200, help="commands training utterances")
    p.add_argument("--subsets-10", type=int, default=10, help="disjoint 10%% subsets to draw from")
    p.add_argument("--subsets-1", type=int, default=20, help="disjoint 1%% subsets to draw from")
    p.add_argument("--size", default="cpu", choices=["tiny", "cpu", "paper"], help="student size")
    p.add_argument("--asr-epochs", type=int, default=8)
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--timing-repeats", type=int, default=3)
    p.add_argument("--timing-epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=REPO / "runs" / "slu_crossmodal_bench")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--plan", action="store_true")
    p.add_argument("--report-only", action="store_true", help="tabulate finished runs (no training)")
    p.add_argument("--render", action="store_true", help="write RESULTS.md from --out's results JSON, run nothing")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--scenarios", nargs="+", default=["whole", "10%", "1%"], choices=["whole", "10%", "1%"],
                   help="run these parts of the table (the others are tabulated from finished runs)")
    p.add_argument("--prep-only", action="store_true", help="fine-tune the teachers, pre-train the acoustic "
                   "module, print the teachers' errors and stop")
    args = p.parse_args(argv)
    args.work = args.work.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        print(render(args.out).read_text(encoding="utf-8"))
        return 0
    if args.plan:
        plan(args)
        return 0
    t0 = time.time()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    print("preparation: teachers and the acoustic module", flush=True)
    prep = run_one(prep_spec(args), args)
    if not isinstance(prep, Path):
        raise SystemExit("the preparation run has not been done (or failed): run without --report-only")
    if args.prep_only:
        print(json.dumps({"teachers": teacher_errors(prep), "acoustic": acoustic_quality(prep), "prep": str(prep)}))
        return 0
    data = run_table(args, prep)
    timing = None
    if not args.no_timing:
        previous = args.work / "timing.json"
        if args.report_only and previous.exists():
            timing = json.loads(previous.read_text())
        elif not args.report_only:
            timing = run_timing(args, prep)
            previous.write_text(json.dumps(timing))
    print(write_report(args, prep, data, timing, (time.time() - t0) / 60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
