"""Reproduce seed 002's (LCMR, Zhao et al.) Tables 2, 4, 5 and Figs. 2-4 on the synthetic read-speech corpus.

    python benchmarks/seed002_lcmr/lcmr_reproduction.py --plan  # print the runs and the expected time, do nothing
    python benchmarks/seed002_lcmr/lcmr_reproduction.py                 # the full benchmark (about 2 h on 2 CPU cores)
    python benchmarks/seed002_lcmr/lcmr_reproduction.py --tiny  # a minutes-long smoke test of the whole pipeline

Rows, each over ``--seeds`` (default 3 seeds), every one a ``compressor run`` of a spec derived from
``specs/rnnt_lcmr.yaml`` (same widths, optimiser, batch size and step budget):

* ``teacher``: Table 1 experiment-1 teacher (4 encoder + 2 prediction LSTM layers), trained once per seed;
  its weights are the pre-trained teacher of the KD and LCMR strategy-2 rows of that seed;
* ``student_alone``: the student (2 + 1 layers) trained with the RNN-T loss only ("Student w/o KD");
* ``lattice_kd``: the student with lattice KD (Panchapagesan et al.; alpha = 1e-3) from the teacher;
* ``lcmr_s2_log``: LCMR, strategy 2 (teacher frozen), log-curriculum scheduler (Eq. 5, B = 40), then
  fine-tuning ("Student + LCMR" of Table 2);
* ``lcmr_s1_log``: LCMR, strategy 1 (teacher and student trained together from scratch; Table 4);
* ``lcmr_s2_constant`` (p = 0.75, then fine-tuning at p = 1), ``lcmr_s2_linear``, ``lcmr_s2_exponential``: the
  other replacement schedulers of Table 5.

Every student row trains ``--mr-steps + --ft-steps`` optimizer steps (KD and student-alone in one stage). With
``--recipe paper`` (the default) every row uses seed 002's optimiser (LAMB, 5e-4, weight decay 1e-3; linear
warm-up over the first 1%, exponential decay to 1e-5 from 20%) under one schedule, and LCMR is one stage whose
last ``--ft-steps`` fine-tune the student alone (``module_replacing``'s ``finetune``); ``--recipe spec`` keeps
the headline spec's optimiser and its separate fine-tuning stage.
Writes into ``--out`` (default ``benchmarks/results``): ``lcmr_table.md`` (WER mean ± std over seeds,
parameter counts, relative WER change vs lattice KD and vs the student alone, the paper's claims checked),
``lcmr_results.json`` (every number), ``lcmr_wer_curves.png`` (validation WER per step, like Fig. 3),
``lcmr_ablations.png`` (strategies and schedulers, like Fig. 4a/b) and ``lcmr_replacing_rate.png`` (the
logged replacing rates, like Fig. 2). Runs go to ``--work`` (default ``runs/lcmr_reproduction``); finished
runs are reused, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: reuse, stats
import stats  # noqa: E402
from reuse import finished, hashed, run_in_subprocess  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BASE_SPEC = REPO / "specs" / "rnnt_lcmr.yaml"

ROWS = ("teacher", "student_alone", "lattice_kd", "lcmr_s2_log", "lcmr_s1_log", "lcmr_s2_constant",
        "lcmr_s2_linear", "lcmr_s2_exponential")
LABELS = {
    "teacher": "Teacher",
    "student_alone": "Student w/o KD",
    "lattice_kd": "Student + lattice KD",
    "lcmr_s2_log": "Student + LCMR (strategy 2, log)",
    "lcmr_s1_log": "Student + LCMR (strategy 1, log)",
    "lcmr_s2_constant": "Student + LCMR (strategy 2, constant 0.75)",
    "lcmr_s2_linear": "Student + LCMR (strategy 2, linear)",
    "lcmr_s2_exponential": "Student + LCMR (strategy 2, exponential)",
}
# Seconds per optimizer step at batch 16, "cpu" widths, one thread per run, two runs on two idle cores
# (measured; for the plan). The large corpus has longer sentences, so its steps cost more.
SECONDS_PER_STEP = {
    "small": {"teacher": 0.26, "student": 0.12, "kd": 0.20, "mr_s2": 0.20, "mr_s1": 0.36},
    "large": {"teacher": 0.35, "student": 0.23, "kd": 0.35, "mr_s2": 0.30, "mr_s1": 0.45},
}
FIXED_SECONDS_PER_RUN = 25.0  # start-up, data loading, final test evaluation


def schedulers(mr_steps: int, stage_steps: int | None = None) -> dict[str, dict[str, Any]]:
    """The replacement schedulers of seed 002's Fig. 2 / Table 5: all but constant reach p = 1 at 75% of the
    module-replacing steps (``mr_steps``), which are the first ``mr_steps`` of a stage of ``stage_steps``
    (default: the stage is the module replacing alone)."""
    reach = 0.75 * mr_steps / (stage_steps or mr_steps)
    return {
        "log": {"name": "log_curriculum", "base": 40.0, "b": 2.0, "reach_at": reach},
        "constant": {"name": "constant", "value": 0.75},
        "linear": {"name": "linear", "start": math.log(2.0) / math.log(40.0), "end": 1.0,
                   "duration": max(1, round(0.75 * mr_steps))},
        "exponential": {"name": "exponential", "p0": math.log(2.0) / math.log(40.0), "reach_at": reach},
    }


#: Seed 002, Sec. 4: LAMB, weight decay 1e-3; the LR ramps up to 5e-4 linearly in the first epoch (1 of 100) and
#: decays to 1e-5 exponentially from epoch 20 to 100; one schedule over the whole training.
PAPER_OPTIMIZER: dict[str, Any] = {"name": "lamb", "lr": 5.0e-4, "weight_decay": 1.0e-3}
PAPER_LR_SCHEDULE: dict[str, Any] = {"name": "exponential", "warmup_fraction": 0.01, "decay_start": 0.2,
                                     "min_lr": 1.0e-5}


def paper_lcmr_stage(base: dict[str, Any], strategy: str, schedule: str, args: argparse.Namespace
                     ) -> dict[str, Any]:
    """Seed 002's LCMR as one stage under one LR schedule: module replacing for the first ``--mr-steps`` (p
    reaching 1 at 75% of them), then the student alone for the last ``--ft-steps`` (the in-stage fine-tuning of
    Fig. 2, epochs 75-100), LAMB at 5e-4."""
    total = args.mr_steps + args.ft_steps
    st = _stage(base, "lcmr", total, args)
    plugin = {"name": "module_replacing", "teacher": "teacher", "student": "student",
              "containers": ["encoder.layers", "predictor.layers"],
              "replacing_rate": schedulers(args.mr_steps, total)[schedule], "finetune": args.ft_steps / total}
    if strategy == "s1":
        st["train"] = ["teacher", "student"]
    else:
        st.update(train=["student"], frozen=["teacher"])
    st["plugins"] = [plugin]
    return st


def _stage(base: dict[str, Any], name: str, steps: int, args: argparse.Namespace) -> dict[str, Any]:
    st = copy.deepcopy(base)
    st["name"] = name
    st["steps"] = steps
    st["batch_size"] = args.batch_size
    st["eval"] = {"every": max(1, args.eval_every), "max_batches": args.eval_batches}
    st.pop("plugins", None)
    st.pop("frozen", None)
    if args.recipe == "paper":  # every row under seed 002's optimiser and one schedule over its training
        st.update(optimizer=dict(PAPER_OPTIMIZER), lr_schedule=dict(PAPER_LR_SCHEDULE))
    return st


def build_spec(row: str, seed: int, args: argparse.Namespace, teacher_ckpt: Path | None) -> dict[str, Any]:
    """The spec of one row and seed, derived from specs/rnnt_lcmr.yaml."""
    base = yaml.safe_load(BASE_SPEC.read_text(encoding="utf-8"))
    teacher_stage, mr_stage, ft_stage = base["stages"][0], base["stages"][1], base["stages"][-1]
    spec: dict[str, Any] = {
        "name": f"{row}_seed{seed}", "seed": seed, "output_dir": str(args.work),
        "task": dict(base["task"], **({} if args.ctc_weight is None else {"ctc_weight": args.ctc_weight})),
        "data": base["data"],
        "teacher": dict(base["teacher"], preset=f"exp{args.experiment}_teacher", size=args.size),
        "student": dict(base["student"], preset=f"exp{args.experiment}_student", size=args.size),
        "trainer": {"threads": args.threads, "device": args.device, "progress_bar": False, "log_every": 50},
        "evaluate": {"split": "test", "extra_splits": ["test_seen"], "models": ["student"]},
    }
    if args.corpus != "small":
        spec["data"] = dict(spec["data"], setting=args.corpus)
    if args.student_layers:
        spec["student"].update(encoder_layers=args.student_layers[0], pred_layers=args.student_layers[1])
    if args.threads is None:
        spec["trainer"].pop("threads")
    if args.tiny:  # a small corpus (the one tests/families/test_rnnt_engine.py uses): seconds to synthesise and load
        spec["data"] = dict(spec["data"], train_size=48, valid_size=8, test_size=8, num_speakers=6, vocab_size=32)
        spec["data"].pop("setting", None)
    total = args.mr_steps + args.ft_steps
    if row == "teacher":
        spec["stages"] = [_stage(teacher_stage, "teacher", args.teacher_steps, args)]
        spec["stages"][0]["train"] = ["teacher"]
        spec["evaluate"]["models"] = ["teacher"]
        return spec
    if row == "student_alone":
        spec.pop("teacher")
        st = _stage(mr_stage, "student", total, args)
        st["train"] = ["student"]
        spec["stages"] = [st]
        return spec
    if row != "lcmr_s1_log":
        assert teacher_ckpt is not None
        spec["teacher"]["checkpoint"] = str(teacher_ckpt)
    if row == "lattice_kd":
        st = _stage(mr_stage, "lattice_kd", total, args)
        st.update(train=["student"], frozen=["teacher"],
                  plugins=[{"name": "lattice_kd", "teacher": "teacher", "alpha": args.kd_alpha}])
        spec["stages"] = [st]
        return spec
    strategy, schedule = row.split("_")[1], row.split("_")[2]
    if args.recipe == "paper":
        spec["stages"] = [paper_lcmr_stage(mr_stage, strategy, schedule, args)]
        return spec
    mr = _stage(mr_stage, "lcmr", args.mr_steps, args)
    plugin = {"name": "module_replacing", "teacher": "teacher", "student": "student",
              "containers": ["encoder.layers", "predictor.layers"],
              "replacing_rate": schedulers(args.mr_steps)[schedule]}
    if schedule == "constant":
        plugin["allow_partial"] = True  # p = 0.75 throughout; the fine-tuning stage runs the student alone
    if strategy == "s1":
        mr["train"] = ["teacher", "student"]
    else:
        mr.update(train=["student"], frozen=["teacher"])
    mr["plugins"] = [plugin]
    ft = _stage(ft_stage, "finetune", args.ft_steps, args)
    ft["train"] = ["student"]
    spec["stages"] = [mr, ft]
    return spec


# --------------------------------------------------------------------------------------------------


def run_one(spec: dict[str, Any], args: argparse.Namespace) -> Path:
    """Run (or reuse) one spec; return its run directory (see ``reuse``)."""
    spec = hashed(spec)
    found = finished(args.work, spec["name"])
    if found is not None and not args.rerun:
        print(f"  reuse {found}", flush=True)
        return found
    return run_in_subprocess(spec, args.work, args.threads or os.cpu_count() or 1)


def collect(run_dir: Path, model: str) -> dict[str, Any]:
    """Final test WER/CER, parameter count, validation WER per step and replacing rates of one run."""
    results = json.loads((run_dir / "final" / "COMPLETE").read_text(encoding="utf-8"))
    final = results["final"][model]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    offsets: dict[str, int] = {}
    offset, curve, rate = 0, [], []
    for stage in results["stages"]:
        offsets[stage["stage"]] = offset
        offset += int(stage["steps"])
    for rec in records:
        if rec.get("stage") not in offsets:
            continue
        x = offsets[rec["stage"]] + int(rec["step"])
        if rec.get("type") == "eval" and "valid/wer" in rec:
            curve.append((x, float(rec["valid/wer"])))
        if "replacing_rate" in rec and rec.get("type") is None:
            rate.append((x, float(rec["replacing_rate"])))
    seen = final.get("test_seen/wer")
    return {"wer": float(final["test/wer"]), "cer": float(final["test/cer"]),
            "wer_seen": None if seen is None else float(seen),
            "parameters": int(results["parameters"][model]), "curve": curve, "replacing_rate": rate,
            "seconds": sum(float(s["seconds"]) for s in results["stages"]), "run_dir": str(run_dir)}


# --------------------------------------------------------------------------------------------------


def _rel(a: float, b: float) -> str:
    return f"{100.0 * (a - b) / b:+.1f}%" if b > 0 else "n/a"


SETS = {"wer": "test, unseen voices", "wer_seen": "test_seen, seen voices"}


def seed_of(run: dict[str, Any], index: int) -> int:
    """The seed a collected run was trained with (its run directory's ``..._seed<k>_...`` name), else its index."""
    m = re.search(r"_seed(\d+)_", str(run.get("run_dir", "")))
    return int(m.group(1)) if m else index


def per_seed(runs: list[dict[str, Any]], key: str) -> dict[int, float]:
    return {seed_of(r, i): float(r[key]) for i, r in enumerate(runs) if r.get(key) is not None}


def claims(data: dict[str, list[dict[str, Any]]], keys: list[str]) -> list[stats.Claim]:
    """Table 2, 4 and 5's claims on each test set, on paired differences of WER by seed (lower is better)."""
    out: list[stats.Claim] = []

    def side(row: str, k: str) -> str:
        return f"{LABELS[row]} {stats.fmt(per_seed(data.get(row, []), k), scale=100, digits=2)}"

    for k in keys:
        for a, b, source in (("lcmr_s2_log", "lattice_kd", "Table 2"), ("lattice_kd", "student_alone", "Table 2"),
                             ("lcmr_s2_log", "student_alone", "Table 2"), ("lcmr_s2_log", "lcmr_s1_log", "Table 4")):
            what = {"lcmr_s2_log": "LCMR" if b != "lcmr_s1_log" else "strategy 2", "lattice_kd": "lattice KD"}[a]
            whom = {"lattice_kd": "lattice KD", "student_alone": "the student alone", "lcmr_s1_log": "strategy 1"}[b]
            out.append(stats.Claim(source, f"{what} beats {whom} ({SETS[k]})", stats.paired(
                per_seed(data.get(a, []), k), per_seed(data.get(b, []), k), higher_is_better=False),
                f"{side(a, k)} vs {side(b, k)}"))
        sched = ("lcmr_s2_log", "lcmr_s2_constant", "lcmr_s2_linear", "lcmr_s2_exponential")
        rows = [per_seed(data.get(r, []), k) for r in sched]
        seeds = set.intersection(*(set(r) for r in rows))
        margin = {sd: min(r[sd] for r in rows[1:]) - rows[0][sd] for sd in sorted(seeds)}
        out.append(stats.Claim("Table 5", f"the log scheduler is best of the four ({SETS[k]}; margin to the best "
                               "other)", stats.interval(margin), "; ".join(side(r, k) for r in sched)))
    return out


def write_table(out: Path, data: dict[str, list[dict[str, Any]]], args: argparse.Namespace,
                machine: dict[str, Any], prefix: str = "lcmr") -> str:
    """The markdown table: a gap row first, then every row on both test sets, then the claims judged."""
    text = "\n".join(table_lines(data, vars(args), machine, prefix)) + "\n"
    (out / f"{prefix}_table.md").write_text(text, encoding="utf-8")
    return text


def table_lines(data: dict[str, list[dict[str, Any]]], a: dict[str, Any], machine: dict[str, Any],
                prefix: str = "lcmr", title: str = "LCMR reproduction (seed 002) on the synthetic read-speech corpus",
                commit: str | None = None, caveats: list[str] | None = None,
                earlier: dict[tuple[str, str], str] | None = None) -> list[str]:
    """One result set (``a``: the arguments it ran with) as a table with its provenance and the claims."""
    keys = [k for k in SETS if any(r.get(k) is not None for runs in data.values() for r in runs)]
    means = {k: {row: stats.spread(per_seed(runs, k)).mean for row, runs in data.items() if runs} for k in keys}
    layers = a.get("student_layers")
    recipe = a.get("recipe", "spec")
    lines = stats.measured_header(
        title, str(machine["date"]), commit or str(machine.get("commit", "not recorded")),
        f"{machine['machine']}; torch {machine['torch']}; {machine['wall_minutes']:.0f} min wall",
        caveats=caveats or [])
    lines += [
        f"Setup: `{a.get('corpus', 'small')}` read-speech corpus; experiment {a['experiment']} shapes (Table 1) at "
        f"`{a['size']}` widths" + (f", student {layers[0]} encoder + {layers[1]} prediction layers" if layers else "")
        + f"; teacher {a['teacher_steps']} steps; every student {a['mr_steps']} + {a['ft_steps']} steps; recipe "
        f"`{recipe}` (" + ("LAMB 5e-4, one LR schedule, in-stage fine-tuning" if recipe == "paper" else
                           "AdamW 3e-3, the LR schedule restarted for a separate fine-tuning stage") +
        f"); batch {a['batch_size']}; seeds {a['seeds']}; greedy decoding; test = voices no training speaker uses"
        + (", test_seen = new sentences of the training voices" if "wer_seen" in keys else "")
        + f"; task {json.dumps(machine['task'])}.", ""]
    if data.get("teacher") and data.get("student_alone"):
        gap = " / ".join(f"{_rel(means[k]['student_alone'], means[k]['teacher'])} ({SETS[k]})" for k in keys)
        lines += [f"**Gap** (the student alone's WER relative to the teacher's; the teacher is worth distilling "
                  f"when this is well above 0, target ≥ +15%): {gap}", ""]
    head = " | ".join(f"{SETS[k]}: WER % | rel. vs lattice KD | rel. vs student alone" for k in keys)
    lines += [f"| Method | Params | {head} | per seed WER % |",
              "|---|---:|" + "---:|---:|---:|" * len(keys) + "---|"]
    for row in ROWS:
        runs = data.get(row)
        if not runs:
            continue
        cells = []
        for k in keys:
            m = means[k][row]
            kd, alone = means[k].get("lattice_kd", float("nan")), means[k].get("student_alone", float("nan"))
            vs_kd = _rel(m, kd) if row not in ("teacher", "lattice_kd") else ""
            vs_alone = _rel(m, alone) if row not in ("teacher", "student_alone") else ""
            cells.append(f"{stats.fmt(per_seed(runs, k), scale=100, digits=2)} | {vs_kd} | {vs_alone}")
        seeds = "; ".join(", ".join(f"{100 * v:.1f}" for v in per_seed(runs, k).values()) for k in keys)
        lines.append(f"| {LABELS[row]} | {runs[0]['parameters'] / 1e6:.2f}M | {' | '.join(cells)} | {seeds} |")
    judged = claims(data, keys)
    for c in judged:  # the verdict of the earlier rule (means alone), where the old table recorded one
        old = (earlier or {}).get((c.text.split(" (")[0], next((v for v in SETS.values() if v in c.text), "")))
        if old is not None and old != c.verdict:
            c.note = f'was "{old}" (earlier rule: the means alone)'
    lines += ["", "#### The paper's claims", ""] + stats.claims_table(judged, scale=100, digits=2, unit=" pts")
    lines += ["", f"Figures: `{prefix}_wer_curves.png` (validation WER per step, Fig. 3), "
              f"`{prefix}_ablations.png` (strategies and schedulers, Fig. 4a/b), "
              f"`{prefix}_replacing_rate.png` (replacing rates, Fig. 2).", ""]
    return lines


#: The result sets in results/ and what to know about each (newest first).
RESULT_SETS: dict[str, dict[str, Any]] = {
    "lcmr": {"title": "Small corpus, 3 seeds", "recorded_in": "2fb5592", "caveats": [
        "Measured with the `spec` recipe (the headline spec's AdamW at 3e-3, the LR schedule restarted for a "
        "separate fine-tuning stage, the replacing rate reaching 1 at 75% of the replacing stage); the benchmark "
        "now defaults to seed 002's recipe (`--recipe paper`: LAMB at 5e-4, one schedule, in-stage "
        "fine-tuning), not re-run."]},
    "lcmr_large": {"title": "Large corpus, 3 seeds", "recorded_in": "c1956fb", "caveats": [
        "Measured with the `spec` recipe (AdamW 3e-3, restarted per stage), not seed 002's LAMB and single "
        "schedule; not re-run."]},
    "lcmr_ctc10_partial": {"title": "Small corpus with an auxiliary CTC loss (ctc_weight 1.0), partial",
                           "recorded_in": "68ac1db", "caveats": [
        "An older, partial result set: measured on 2026-11-22 on the splits of the time (before the held-out-"
        "voice split and its `test_seen` set existed), with the `spec` recipe and an auxiliary CTC loss; most "
        "rows have one seed."]},
}


def earlier_verdicts(table_md: Path) -> dict[tuple[str, str], str]:
    """(claim, test set) -> verdict from a table written by the earlier rule (``- CLAIM (Table N): **v** on SET``)."""
    out: dict[tuple[str, str], str] = {}
    if not table_md.exists():
        return out
    for line in table_md.read_text(encoding="utf-8").splitlines():
        m = re.match(r"- (.+?) \(Table \d\): (.*)", line)
        if m:
            for verdict, where in re.findall(r"\*\*([^*]+)\*\* on ([^;]+)", m.group(2)):
                out[(m.group(1), where.strip())] = verdict
    return out


def results_page(results: Path) -> str:
    """RESULTS.md from the result JSON files in ``results``: every result set under the shared statistics."""
    lines = ["# Seed 002 (Zhao et al.): LCMR compression of an LSTM RNN-T", "",
             "Each result set below is re-rendered from its JSON in `results/` by `lcmr_reproduction.py --render`; "
             "where a JSON file did not record its commit, the commit named is the one that recorded the file.", ""]
    for prefix, about in RESULT_SETS.items():
        path = results / f"{prefix}_results.json"
        if not path.exists():
            continue
        d = json.loads(path.read_text(encoding="utf-8"))
        commit = d["machine"].get("commit") or f"{about['recorded_in']}, the commit that recorded it"
        lines += table_lines(d["rows"], d["args"], d["machine"], prefix, about["title"], commit,
                             d.get("caveats", about["caveats"]), earlier_verdicts(results / f"{prefix}_table.md"))
    return "\n".join(lines) + "\n"


def render(results: Path) -> Path:
    """Write RESULTS.md beside this script from the result JSON files in ``results`` (no training)."""
    page = HERE / "RESULTS.md"
    page.write_text(results_page(results), encoding="utf-8")
    return page


def write_plots(out: Path, data: dict[str, list[dict[str, Any]]], prefix: str = "lcmr") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def mean_curve(runs: list[dict[str, Any]], key: str = "curve") -> tuple[list[int], list[float]]:
        by_x: dict[int, list[float]] = {}
        for r in runs:
            for x, y in r[key]:
                by_x.setdefault(x, []).append(y)
        xs = sorted(by_x)
        return xs, [statistics.mean(by_x[x]) for x in xs]

    def panel(ax: Any, rows: tuple[str, ...], title: str) -> None:
        for row in rows:
            if data.get(row):
                xs, ys = mean_curve(data[row])
                ax.plot(xs, [100 * y for y in ys], marker=".", label=LABELS[row])
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("valid WER %")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    panel(ax, ("teacher", "student_alone", "lattice_kd", "lcmr_s2_log"), "WER per step (cf. Fig. 3)")
    fig.tight_layout()
    fig.savefig(out / f"{prefix}_wer_curves.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    panel(axes[0], ("lcmr_s1_log", "lcmr_s2_log"), "Training strategies (cf. Fig. 4a)")
    panel(axes[1], ("lcmr_s2_constant", "lcmr_s2_linear", "lcmr_s2_log", "lcmr_s2_exponential"),
          "Replacement schedulers (cf. Fig. 4b)")
    fig.tight_layout()
    fig.savefig(out / f"{prefix}_ablations.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for row in ("lcmr_s2_constant", "lcmr_s2_linear", "lcmr_s2_log", "lcmr_s2_exponential"):
        if data.get(row):
            xs, ys = mean_curve(data[row][:1], "replacing_rate")
            ax.plot(xs, ys, label=LABELS[row].split(", ")[-1].rstrip(")"))
    ax.set_xlabel("optimizer step (module replacing stage)")
    ax.set_ylabel("replacing rate p")
    ax.set_title("Replacement schedulers (cf. Fig. 2)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{prefix}_replacing_rate.png", dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------


def plan(args: argparse.Namespace, rows: list[str]) -> float:
    scale = args.batch_size / 16
    steps = args.mr_steps + args.ft_steps
    sps = SECONDS_PER_STEP[args.corpus]
    per_row = {
        "teacher": args.teacher_steps * sps["teacher"],
        "student_alone": steps * sps["student"],
        "lattice_kd": steps * sps["kd"],
        "lcmr_s1_log": (args.mr_steps * sps["mr_s1"]
                        + args.ft_steps * sps["student"]),
    }
    for r in rows:
        per_row.setdefault(r, args.mr_steps * sps["mr_s2"]
                           + args.ft_steps * sps["student"])
    total = 0.0
    print(f"Plan: {len(rows)} rows x {len(args.seeds)} seeds = {len(rows) * len(args.seeds)} runs "
          f"(experiment {args.experiment}, size {args.size}, batch {args.batch_size}, device {args.device})")
    for r in rows:
        est = per_row[r] * scale + FIXED_SECONDS_PER_RUN
        total += est * len(args.seeds)
        print(f"  {r:22s} {est / 60:6.1f} min per seed")
    print(f"Expected: about {total / 60:.0f} min of one idle CPU core ({sps} s/step at batch 16, "
          f"cpu widths), so about {total / 60 / max(1, args.jobs):.0f} min wall with --jobs {args.jobs} on "
          f"{args.jobs} idle cores; slower when other work shares the cores, much faster on a GPU")
    return total


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    p.add_argument("--experiment", type=int, choices=(1, 2), default=1, help="Table 1 experiment shapes")
    p.add_argument("--size", choices=("cpu", "paper", "tiny"), default="cpu")
    p.add_argument("--corpus", choices=("small", "large"), default="small",
                   help="read-speech setting: small (58-word grammar) or large (thousands of words, noise)")
    p.add_argument("--student-layers", type=int, nargs=2, metavar=("ENCODER", "PREDICTION"), default=None,
                   help="a smaller student than the experiment's (e.g. 1 1: each layer replaces 4 / 2)")
    p.add_argument("--teacher-steps", type=int, default=1000)
    p.add_argument("--mr-steps", type=int, default=600, help="module replacing stage (LCMR rows)")
    p.add_argument("--ft-steps", type=int, default=200, help="fine-tuning stage (LCMR rows)")
    p.add_argument("--recipe", choices=("paper", "spec"), default="paper",
                   help="paper: seed 002's LAMB at 5e-4 and one LR schedule per row, LCMR with in-stage fine-tuning "
                        "(module_replacing finetune); spec: specs/rnnt_lcmr.yaml's optimiser and stages (the "
                        "recipe the results in results/ were measured with)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=16,
                   help="validation batches per evaluation (16 x 16 = the whole valid split: steadier selection)")
    p.add_argument("--kd-alpha", type=float, default=1e-3)
    p.add_argument("--ctc-weight", type=float, default=None,
                   help="task ctc_weight: an auxiliary CTC term (default: the base spec's, 0 = RNN-T loss only)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--jobs", type=int, default=2, help="runs at the same time (2 for 2 cores)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "lcmr_reproduction")
    p.add_argument("--prefix", default="lcmr", help="file name prefix of the results")
    p.add_argument("--rerun", action="store_true", help="do not reuse finished runs")
    p.add_argument("--plan", action="store_true", help="print the plan and the expected time, then exit")
    p.add_argument("--report-only", action="store_true",
                   help="tabulate the runs of these settings that have finished; start none")
    p.add_argument("--tiny", action="store_true", help="smoke test: tiny widths, a few steps, 2 seeds")
    p.add_argument("--render", action="store_true", help="write RESULTS.md from --out's result JSON files, run "
                                                          "nothing")
    args = p.parse_args(argv)
    if args.tiny:
        args.size, args.teacher_steps, args.mr_steps, args.ft_steps = "tiny", 12, 8, 4
        args.eval_every, args.eval_batches, args.seeds = 4, 1, args.seeds[:2]
        if args.work == REPO / "runs" / "lcmr_reproduction":
            args.work = REPO / "runs" / "lcmr_reproduction_tiny"
        if args.prefix == "lcmr":
            args.prefix = "lcmr_tiny"
    args.work = args.work.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        print(render(args.out).read_text(encoding="utf-8"))
        return 0
    rows = [r for r in ROWS if r in args.rows]
    needs_teacher = any(r not in ("teacher", "student_alone", "lcmr_s1_log") for r in rows)
    if needs_teacher and "teacher" not in rows:
        rows.insert(0, "teacher")
    plan(args, rows)
    if args.plan:
        return 0
    t0 = time.time()
    dirs: dict[tuple[str, int], Path] = {}
    if args.report_only:
        return reportfinished(args, rows)
    # Queue order keeps every core busy: the teachers, then the rows that need no teacher, then the rows that
    # start from their seed's teacher (by then it has finished; a job waits for it otherwise).
    independent = ("student_alone", "lcmr_s1_log")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each job is a `compressor run` subprocess
        teachers = {s: pool.submit(run_one, build_spec("teacher", s, args, None), args)
                    for s in args.seeds} if "teacher" in rows else {}

        def job(row: str, seed: int) -> Path:
            waits = row not in independent and seed in teachers  # only these rows read the teacher's weights
            teacher = teachers[seed].result() if waits else Path()
            return run_one(build_spec(row, seed, args, teacher / "final" / "teacher.pt"), args)

        order = [(r, s) for s in args.seeds for r in rows if r in independent]
        order += [(r, s) for s in args.seeds for r in rows if r != "teacher" and r not in independent]
        jobs = {(r, s): pool.submit(job, r, s) for r, s in order}
        dirs.update({("teacher", s): f.result() for s, f in teachers.items()})
        dirs.update({k: f.result() for k, f in jobs.items()})
    data = {r: [collect(dirs[(r, s)], "teacher" if r == "teacher" else "student") for s in args.seeds]
            for r in rows}
    return write_results(args, data, (time.time() - t0) / 60)


def reportfinished(args: argparse.Namespace, rows: list[str]) -> int:
    """Results from the finished runs only (an interrupted benchmark): rows list the seeds they have."""
    dirs: dict[tuple[str, int], Path] = {}
    for s in args.seeds:
        found = finished(args.work, hashed(build_spec("teacher", s, args, None))["name"])
        if found is not None:
            dirs[("teacher", s)] = found
    for s in args.seeds:
        for r in rows:
            if r == "teacher":
                continue
            teacher = dirs.get(("teacher", s))
            if teacher is None and r not in ("student_alone", "lcmr_s1_log"):
                continue
            spec = build_spec(r, s, args, (teacher or Path()) / "final" / "teacher.pt")
            found = finished(args.work, hashed(spec)["name"])
            if found is not None:
                dirs[(r, s)] = found
    data = {r: [collect(dirs[(r, s)], "teacher" if r == "teacher" else "student")
                for s in args.seeds if (r, s) in dirs] for r in rows}
    # wall time: from the first run's start (its directory's timestamp) to the last run's end
    starts = [dt.datetime.strptime(d.name[:15], "%Y%m%d-%H%M%S").timestamp() for d in dirs.values()]
    ends = [(d / "final" / "COMPLETE").stat().st_mtime for d in dirs.values()]
    print(f"{len(dirs)} of {len(rows) * len(args.seeds)} runs finished", flush=True)
    return write_results(args, data, (max(ends) - min(starts)) / 60 if dirs else 0.0)


def write_results(args: argparse.Namespace, data: dict[str, list[dict[str, Any]]], wall_minutes: float) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    machine = {"machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, "
                          f"{args.threads or 'all'} torch thread(s) per run, device {args.device})",
               "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "torch": torch.__version__, "wall_minutes": wall_minutes,
               "task": build_spec("student_alone", 0, args, None)["task"]}
    prefix = args.prefix
    machine["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                       text=True).stdout.strip()
    json_data = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                 "machine": machine, "rows": data, "caveats": []}
    (args.out / f"{prefix}_results.json").write_text(json.dumps(json_data, indent=1), encoding="utf-8")
    text = write_table(args.out, data, args, machine, prefix)
    write_plots(args.out, data, prefix)
    if args.out == HERE / "results":
        render(args.out)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
