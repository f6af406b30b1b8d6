"""Reproduce seed 002's (LCMR, Zhao et al.) Tables 2, 4, 5 and Figs. 2-4: compression from the shipped teacher.

    python benchmarks/seed002_lcmr/lcmr_reproduction.py --plan  # print the runs and the expected time, do nothing
    python benchmarks/seed002_lcmr/lcmr_reproduction.py         # the full benchmark (see --plan for its time)
    python benchmarks/seed002_lcmr/lcmr_reproduction.py --tiny  # a minutes-long smoke test of the whole pipeline

Every row is derived from the headline spec ``specs/rnnt_lcmr.yaml``: its shipped pre-trained teacher (``teacher:
{name: pretrained, id: rnnt_read_speech_en}``), its data (the large read-speech corpus, 4,000 training
utterances, character tokens), its student, trainer, evaluation splits and its one ``lcmr`` stage (steps, batch
size, gradient clipping, LAMB under one LR schedule, evaluation, the vtlp and spec_augment plugins). Rows, each
over ``--seeds`` (default 0 1 2) and paired by seed:

* ``teacher``: the shipped teacher itself, not trained: evaluated (frozen) in each seed's ``lcmr_s2_log`` run;
  the corpus does not depend on the run's seed, so this row is the same for every seed;
* ``student_alone``: the student trained alone for the same steps, data, optimizer and schedule, with the
  stage's plugins that need no teacher (vtlp, spec_augment): the headline's ``baseline: {student_alone: true}``,
  trained inside each seed's ``lcmr_s2_log`` run from the same initial weights ("Student w/o KD");
* ``lattice_kd``: the student with lattice KD (Panchapagesan et al.; ``--kd-alpha``) from the frozen shipped
  teacher, the same stage with ``lattice_kd`` in place of ``module_replacing`` (vtlp, spec_augment kept);
* ``lcmr_s2_log``: exactly the headline's ``lcmr`` stage: strategy 2 (the shipped teacher frozen), the log
  curriculum (Eq. 5), in-stage fine-tuning of the student alone for the stage's last ``finetune`` fraction
  ("Student + LCMR" of Table 2);
* ``lcmr_s1_log``: strategy 1 (Table 4): the teacher trained together with the student from scratch, ``train:
  [teacher, student]``; the teacher is the shipped one's architecture (``rnnt_lstm`` with the arguments its
  ``model.json`` records) at a random initialisation;
* ``lcmr_s2_constant`` (p = 0.75, then the in-stage fine-tuning), ``lcmr_s2_linear``, ``lcmr_s2_exponential``:
  the other replacement schedulers of Table 5; those that reach p = 1 reach it at the step the headline's log
  curriculum does.

Writes into ``--out`` (default ``benchmarks/seed002_lcmr/results``, file names prefixed ``--prefix``):
``lcmr_table.md`` (WER mean ± std over seeds on each test split, parameter counts, relative WER change vs lattice
KD and vs the student alone, the paper's claims judged on paired 95% intervals), ``lcmr_results.json`` (every
number), ``lcmr_wer_curves.png`` (validation WER per step, like Fig. 3), ``lcmr_ablations.png`` (strategies and
schedulers, like Fig. 4a/b) and ``lcmr_replacing_rate.png`` (the logged replacing rates, like Fig. 2). Runs go to
``--work`` (default ``runs/lcmr_reproduction``), each named with a hash of its spec: a finished run is reused
only for exactly the same settings, so an interrupted benchmark continues where it stopped. A finished run of
the headline itself (``compressor run specs/rnnt_lcmr.yaml``, under ``runs/rnnt_lcmr``) whose spec is the
``lcmr_s2_log`` row's for a seed (the machine's settings aside: threads, device, export) is reused for that seed's
teacher, student-alone and LCMR rows.

``--teacher DIR`` uses another shipped teacher folder (``compressor teacher ship``) in place of the headline's.
``--tiny`` trains a tiny teacher on a tiny corpus, ships it into ``--work`` with ``compressor teacher ship`` and
runs every row from it for a few steps: the pipeline exercised in minutes, without the real teacher.
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
#: the spec that trains the shipped teacher: its model's arguments stand in for model.json's while the shipped
#: folder does not exist yet (``--plan``, the tests)
TEACHER_SPEC = REPO / "specs" / "rnnt_teacher.yaml"
PACKAGE_PRETRAINED = REPO / "compressor" / "pretrained"

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
#: rows read from another row's run: (the run's row, the model in it)
READ_FROM = {"teacher": ("lcmr_s2_log", "teacher"), "student_alone": ("lcmr_s2_log", "student_alone")}
# Seconds per optimizer step at batch 24, one thread per run, two runs on two idle cores: rough estimates for
# the headline's models (cpu widths, 6 frames stacked, bf16), not measured at this configuration.
SECONDS_PER_STEP = {"student": 0.25, "kd": 0.40, "mr_s2": 0.35, "mr_s1": 0.55}
FIXED_SECONDS_PER_RUN = 60.0  # start-up, data loading, the final evaluation on the test splits
TINY_TEACHER = "tiny_teacher"


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


def headline(args: argparse.Namespace) -> dict[str, Any]:
    """The headline spec as the benchmark reads it (``--tiny``: on a tiny corpus, tiny models, a few steps)."""
    base = yaml.safe_load(BASE_SPEC.read_text(encoding="utf-8"))
    if not args.tiny:
        return base
    # a small corpus (the one tests/families/test_rnnt_engine.py uses): seconds to synthesise and load
    base["data"] = {k: v for k, v in base["data"].items() if k != "setting"}
    base["data"].update(train_size=48, valid_size=8, test_size=8, num_speakers=6, vocab_size=32)
    base["student"] = dict(base["student"], size="tiny")
    (st,) = base["stages"]
    st.update(steps=12, batch_size=4, eval={"every": 4, "max_batches": 1})
    return base


def lcmr_stage(base: dict[str, Any]) -> dict[str, Any]:
    """The headline's one stage that replaces modules (a copy)."""
    found = [st for st in base["stages"] if any(p["name"] == "module_replacing" for p in st.get("plugins", []))]
    if len(found) != 1:
        raise SystemExit(f"{BASE_SPEC}: expected one stage with module_replacing, found {len(found)}")
    return copy.deepcopy(found[0])


def teacher_ref(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """The spec's teacher: the headline's shipped teacher, or ``--teacher DIR``."""
    return {"name": "pretrained", "path": str(args.teacher)} if args.teacher else dict(base["teacher"])


def teacher_folder(args: argparse.Namespace, base: dict[str, Any]) -> Path:
    """The shipped teacher's folder (it may not exist yet)."""
    ref = teacher_ref(args, base)
    return Path(ref["path"]) if ref.get("path") else PACKAGE_PRETRAINED / str(ref["id"])


def scratch_teacher(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """Strategy 1's teacher: the shipped teacher's family and recorded arguments, randomly initialised. Before
    the shipped folder exists, the model that ``specs/rnnt_teacher.yaml`` trains (the shipped teacher's recipe)."""
    desc = teacher_folder(args, base) / "model.json"
    if desc.is_file():
        recorded = json.loads(desc.read_text(encoding="utf-8"))
        return {"name": recorded["family"], **recorded["args"]}
    return dict(yaml.safe_load(TEACHER_SPEC.read_text(encoding="utf-8"))["student"])


def build_spec(row: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """The spec of the run that gives ``row`` for ``seed`` (``teacher`` and ``student_alone`` are read from the
    ``lcmr_s2_log`` run, see ``READ_FROM``), derived from specs/rnnt_lcmr.yaml."""
    run_row = READ_FROM.get(row, (row, ""))[0]
    base = headline(args)
    stage = lcmr_stage(base)
    spec: dict[str, Any] = {
        "name": f"{run_row}_seed{seed}", "seed": seed, "output_dir": str(args.work),
        "task": base["task"], "data": base["data"], "teacher": teacher_ref(args, base), "student": base["student"],
        "trainer": dict(base.get("trainer", {}), threads=args.threads, device=args.device, progress_bar=False),
        "evaluate": dict(base.get("evaluate", {}), models=["student"]),
    }
    if args.threads is None:
        spec["trainer"].pop("threads")
    (replacing,) = [p for p in stage["plugins"] if p["name"] == "module_replacing"]
    own = [p for p in stage["plugins"] if p["name"] != "module_replacing"]  # vtlp, spec_augment: no teacher
    if run_row == "lcmr_s2_log":  # the headline's stage, its evaluation (teacher too) and its student alone
        spec["stages"] = [stage]
        spec["evaluate"] = dict(base["evaluate"])
        spec["baseline"] = dict(base.get("baseline") or {}, student_alone=True, model="student")
        return spec
    if run_row == "lattice_kd":
        stage.update(name="lattice_kd", train=["student"], frozen=["teacher"],
                     plugins=[{"name": "lattice_kd", "teacher": "teacher", "alpha": args.kd_alpha}, *own])
        spec["stages"] = [stage]
        return spec
    _, strategy, schedule = run_row.split("_")
    rate = copy.deepcopy(replacing["replacing_rate"])
    if schedule != "log":  # the other schedulers reach p = 1 where the headline's log curriculum does
        total = int(stage["steps"])
        reach = float(rate.get("reach_at", 0.75))
        rate = schedulers(max(1, round(reach * total / 0.75)), total)[schedule]
    stage["plugins"] = [dict(replacing, replacing_rate=rate), *own]
    if strategy == "s1":
        spec["teacher"] = scratch_teacher(args, base)
        if args.tiny:
            spec["teacher"]["size"] = "tiny"
        stage["train"] = ["teacher", "student"]
        stage.pop("frozen", None)
    else:
        stage.update(train=["student"], frozen=["teacher"])
    spec["stages"] = [stage]
    return spec


def tiny_teacher_spec(args: argparse.Namespace) -> dict[str, Any]:
    """``--tiny``: a tiny teacher of the shipped one's shape, trained on the tiny corpus, to be shipped."""
    base = headline(args)
    (st,) = base["stages"]
    model = dict(yaml.safe_load(TEACHER_SPEC.read_text(encoding="utf-8"))["student"], size="tiny")
    return {"name": "tiny_teacher", "seed": 0, "output_dir": str(args.work), "task": base["task"],
            "data": base["data"], "student": model,
            "trainer": {"threads": args.threads or 1, "device": args.device, "progress_bar": False},
            "stages": [{"name": "teacher", "train": ["student"], "steps": 24, "batch_size": st["batch_size"],
                        "optimizer": {"name": "adamw", "lr": 3e-3}, "eval": {"every": 12, "max_batches": 1}}],
            "evaluate": {"split": "test", "models": ["student"]}}


def ship_tiny_teacher(args: argparse.Namespace) -> Path:
    """Train (or reuse) the tiny teacher and ship it into ``--work/pretrained/``; the shipped folder."""
    out = args.work / "pretrained" / TINY_TEACHER
    run_dir = run_one(tiny_teacher_spec(args), args)
    stamp = out.parent / f"{TINY_TEACHER}.shipped_from"  # the run it was shipped from
    if out.is_dir() and stamp.is_file() and stamp.read_text(encoding="utf-8") == str(run_dir):
        return out
    proc = subprocess.run([sys.executable, "-m", "compressor", "teacher", "ship", str(run_dir), "--model", "student",
                           "--name", TINY_TEACHER, "--out", str(out), "--force"], cwd=REPO, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"compressor teacher ship failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    stamp.write_text(str(run_dir), encoding="utf-8")
    print(f"  shipped the tiny teacher: {out}", flush=True)
    return out


# --------------------------------------------------------------------------------------------------


def run_one(spec: dict[str, Any], args: argparse.Namespace) -> Path:
    """Run (or reuse) one spec; return its run directory (see ``reuse``)."""
    spec = hashed(spec)
    found = finished(args.work, spec["name"])
    if found is not None and not args.rerun:
        print(f"  reuse {found}", flush=True)
        return found
    return run_in_subprocess(spec, args.work, args.threads or os.cpu_count() or 1)


def comparable(spec: dict[str, Any]) -> str:
    """What decides a run's numbers, as sorted JSON: the spec without its name, description, output folder,
    export and the trainer's machine settings (threads, device, progress bar; its precision counts)."""
    out = {k: v for k, v in spec.items() if k not in ("name", "description", "output_dir", "trainer", "export")}
    out["precision"] = (spec.get("trainer") or {}).get("precision")
    return json.dumps(out, sort_keys=True, default=str)


def headline_run(seed: int, args: argparse.Namespace, root: Path | None = None) -> Path | None:
    """A finished ``compressor run specs/rnnt_lcmr.yaml`` of ``seed`` (under ``root``, default the headline's
    output folder) whose spec is the ``lcmr_s2_log`` row's but for the machine's settings (see ``comparable``):
    it gives the teacher, student-alone and LCMR rows of that seed, so it is reused (not with ``--rerun``,
    ``--tiny`` or ``--teacher``)."""
    if args.tiny or args.teacher is not None or args.rerun:
        return None
    base = headline(args)
    root = root or REPO / str(base.get("output_dir", "runs")) / str(base["name"])
    want = comparable(build_spec("lcmr_s2_log", seed, args))
    for done in sorted(root.glob("*/final/COMPLETE"), reverse=True):
        run_dir = done.parent.parent
        try:
            theirs = yaml.safe_load((run_dir / "resolved_spec.yaml").read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(theirs, dict) and comparable(theirs) == want:
            return run_dir
    return None


def run_row(row: str, seed: int, args: argparse.Namespace) -> Path:
    """The run directory of a run row (see ``runs_of``) and seed: a finished headline run, a finished run of
    the same spec, or a new run."""
    if row == "lcmr_s2_log":
        found = headline_run(seed, args)
        if found is not None:
            print(f"  reuse the headline run {found}", flush=True)
            return found
    return run_one(build_spec(row, seed, args), args)


def collect(run_dir: Path, model: str) -> dict[str, Any]:
    """Final test WERs, parameter count, validation WER per step and replacing rates of ``model`` in one run
    (``student_alone``: the student trained alone in it; ``teacher``: the frozen teacher, no curve)."""
    results = json.loads((run_dir / "final" / "COMPLETE").read_text(encoding="utf-8"))
    final = results["final"][model]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    stages = results.get("alone", {}).get("stages", []) if model.endswith("_alone") else results["stages"]
    offsets: dict[str, int] = {}
    offset, curve, rate = 0, [], []
    for stage in stages if model != "teacher" else []:
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
    params = results["parameters"]
    return {"wer": float(final["test/wer"]), "cer": float(final["test/cer"]),
            "wer_seen": None if seen is None else float(seen),
            "parameters": int(params.get(model, params.get(model.removesuffix("_alone"), 0))), "curve": curve,
            "replacing_rate": rate, "seconds": 0.0 if model == "teacher" else sum(float(s["seconds"]) for s in stages),
            "run_dir": str(run_dir)}


# --------------------------------------------------------------------------------------------------


def _rel(a: float, b: float) -> str:
    return f"{100.0 * (a - b) / b:+.1f}%" if b > 0 else "n/a"


SETS = {"wer": "test, unseen voices", "wer_seen": "test_seen, seen voices"}


def seed_of(run: dict[str, Any], index: int) -> int:
    """The seed a collected run was trained with (recorded, else its run directory's ``..._seed<k>_...`` name,
    else its index: result sets written before the seed was recorded)."""
    if run.get("seed") is not None:
        return int(run["seed"])
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
    text = "\n".join(table_lines(data, dict(vars(args), setup=setup_text(args)), machine, prefix)) + "\n"
    (out / f"{prefix}_table.md").write_text(text, encoding="utf-8")
    return text


def table_lines(data: dict[str, list[dict[str, Any]]], a: dict[str, Any], machine: dict[str, Any],
                prefix: str = "lcmr", title: str = "LCMR reproduction (seed 002) on the synthetic read-speech corpus",
                commit: str | None = None, caveats: list[str] | None = None,
                earlier: dict[tuple[str, str], str] | None = None) -> list[str]:
    """One result set (``a``: the arguments it ran with) as a table with its provenance and the claims."""
    keys = [k for k in SETS if any(r.get(k) is not None for runs in data.values() for r in runs)]
    means = {k: {row: stats.spread(per_seed(runs, k)).mean for row, runs in data.items() if runs} for k in keys}
    lines = stats.measured_header(
        title, str(machine["date"]), commit or str(machine.get("commit", "not recorded")),
        f"{machine['machine']}; torch {machine['torch']}; {machine['wall_minutes']:.0f} min wall",
        caveats=caveats or [])
    lines += [f"Setup: {a['setup'] if 'setup' in a else old_setup(a)}; seeds {a['seeds']}; greedy decoding; test = "
              "voices no training speaker uses" + (", test_seen = new sentences of the training voices"
                                                   if "wer_seen" in keys else "")
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


def old_setup(a: dict[str, Any]) -> str:
    """The setup of a result set measured before the shipped teacher (a teacher trained in each seed's runs)."""
    layers = a.get("student_layers")
    recipe = a.get("recipe", "spec")
    return (f"`{a.get('corpus', 'small')}` read-speech corpus; experiment {a['experiment']} shapes (Table 1) at "
            f"`{a['size']}` widths" + (f", student {layers[0]} encoder + {layers[1]} prediction layers" if layers
                                       else "")
            + f"; teacher trained in each seed's runs, {a['teacher_steps']} steps; every student {a['mr_steps']} + "
            f"{a['ft_steps']} steps; recipe `{recipe}` (" + (
                "LAMB 5e-4, one LR schedule, in-stage fine-tuning" if recipe == "paper" else
                "AdamW 3e-3, the LR schedule restarted for a separate fine-tuning stage")
            + f"); batch {a['batch_size']}")


def setup_text(args: argparse.Namespace) -> str:
    """This benchmark's setup in one line, from the headline spec it derives every row from."""
    base = headline(args)
    stage = lcmr_stage(base)
    (mr,) = [p for p in stage["plugins"] if p["name"] == "module_replacing"]
    data = base["data"]
    teacher = teacher_ref(args, base)
    return (f"every row derived from `specs/rnnt_lcmr.yaml`{' (--tiny)' if args.tiny else ''}: shipped teacher "
            f"`{teacher.get('id') or teacher.get('path')}`; data {data['name']} "
            f"{data.get('setting', 'small')}, {data.get('train_size', 'default')} training utterances, tokenizer "
            f"{data.get('tokenizer', 'default')}; student {json.dumps(base['student'])}; every student row "
            f"{stage['steps']} steps at batch {stage['batch_size']}, {stage['optimizer']['name']} at "
            f"{stage['optimizer']['lr']} under one `{stage.get('lr_schedule', {}).get('name', 'constant')}` LR "
            f"schedule; LCMR fine-tunes in-stage for the last {mr.get('finetune', 0)} of it; plugins kept in every "
            f"row: {', '.join(p['name'] for p in stage['plugins'] if p['name'] != 'module_replacing') or 'none'}; "
            f"lattice KD alpha {args.kd_alpha}")


#: The result sets in results/ and what to know about each (newest first).
RESULT_SETS: dict[str, dict[str, Any]] = {
    "shipped_teacher/lcmr": {"title": "From the shipped teacher, 3 seeds (the headline's recipe)",
                             "recorded_in": "b425f29", "caveats": []},
    "lcmr": {"title": "Small corpus, 3 seeds", "recorded_in": "2fb5592", "caveats": [
        "Measured with the `spec` recipe (the headline spec's AdamW at 3e-3, the LR schedule restarted for a "
        "separate fine-tuning stage, the replacing rate reaching 1 at 75% of the replacing stage); the benchmark "
        "has since moved to seed 002's recipe (LAMB, one schedule, in-stage fine-tuning, the headline spec's), "
        "not re-run."]},
    "lcmr_large": {"title": "Large corpus, 3 seeds", "recorded_in": "c1956fb", "caveats": [
        "Measured with the `spec` recipe (AdamW 3e-3, restarted per stage), not seed 002's LAMB and single "
        "schedule; not re-run."]},
    "lcmr_ctc10_partial": {"title": "Small corpus with an auxiliary CTC loss (ctc_weight 1.0), partial",
                           "recorded_in": "68ac1db", "caveats": [
        "An older, partial result set: measured on 2026-11-22 on the splits of the time (before the held-out-"
        "voice split and its `test_seen` set existed), with the `spec` recipe and an auxiliary CTC loss; most "
        "rows have one seed."]},
}


#: RESULTS.md's "how to run" part (the page is rendered by ``--render``)
HOW_TO_RUN = [
    "## How to run", "",
    "Every row is derived from the headline spec `specs/rnnt_lcmr.yaml` and compresses from its shipped teacher "
    "(`compressor/pretrained/rnnt_read_speech_en`, trained by `specs/rnnt_teacher.yaml` and shipped with "
    "`compressor teacher ship`): the teacher itself (evaluated, not trained), the student alone (the headline's "
    "`baseline`), lattice KD from the frozen teacher, LCMR strategy 2 with the log curriculum (the headline's "
    "stage), strategy 1 (a teacher of the same architecture trained from scratch with the student) and the "
    "constant, linear and exponential schedulers; each over seeds 0 1 2, the claims judged on paired 95% "
    "intervals.", "",
    "```text",
    "python benchmarks/seed002_lcmr/lcmr_reproduction.py --plan   # the runs and the expected time",
    "python benchmarks/seed002_lcmr/lcmr_reproduction.py          # the benchmark (--jobs 2 runs at a time)",
    "python benchmarks/seed002_lcmr/lcmr_reproduction.py --tiny   # minutes: a tiny teacher shipped into the work dir",
    "python benchmarks/seed002_lcmr/lcmr_reproduction.py --render # this page from results/*.json",
    "```", "",
    "Finished runs in `runs/lcmr_reproduction` are reused (runs are named by a hash of their spec), so an "
    "interrupted benchmark continues; `--report-only` tabulates what has finished. A finished headline run "
    "(`compressor run specs/rnnt_lcmr.yaml`, seed 0, in `runs/rnnt_lcmr`) is reused for seed 0's teacher, "
    "student-alone and LCMR rows. `--teacher DIR` compresses another shipped teacher folder.", ""]


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
             "> The first result set compresses the shipped teacher (`compressor/pretrained/rnnt_read_speech_en`) "
             "with the headline's recipe; every later one was measured with a teacher trained inside each seed's "
             "runs, before the teacher shipped, and with earlier recipes (their caveats say which).", "",
             *HOW_TO_RUN,
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
            if any(r["curve"] for r in data.get(row, [])):  # (the shipped teacher is not trained: no curve)
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


def runs_of(rows: list[str]) -> list[str]:
    """The rows whose runs give ``rows`` (``teacher`` and ``student_alone`` come from ``lcmr_s2_log``'s)."""
    need = {READ_FROM.get(r, (r, ""))[0] for r in rows}
    return [r for r in ROWS if r in need]


def plan(args: argparse.Namespace, rows: list[str]) -> float:
    """Print the runs and the expected time; the expected seconds of one idle core."""
    base = headline(args)
    stage = lcmr_stage(base)
    steps = int(stage["steps"])
    (mr,) = [p for p in stage["plugins"] if p["name"] == "module_replacing"]
    ft = round(float(mr.get("finetune", 0.0)) * steps)
    sps = {k: v * int(stage["batch_size"]) / 24 for k, v in SECONDS_PER_STEP.items()}
    per_run = {
        "lattice_kd": steps * sps["kd"],
        "lcmr_s1_log": (steps - ft) * sps["mr_s1"] + ft * sps["student"],
        # the headline's run: LCMR, then the student alone (its baseline) for as many steps
        "lcmr_s2_log": (steps - ft) * sps["mr_s2"] + ft * sps["student"] + steps * sps["student"],
    }
    runs = runs_of(rows)
    total = 0.0
    folder = teacher_folder(args, base)
    print(f"Plan: rows {', '.join(rows)}: {len(runs)} runs x {len(args.seeds)} seeds = {len(runs) * len(args.seeds)} "
          f"runs, every one {steps} steps at batch {stage['batch_size']} from {BASE_SPEC.relative_to(REPO)} "
          f"(device {args.device}, {args.threads or 'all'} thread(s) per run)")
    print(f"  teacher: {'a tiny one, trained and shipped into --work first' if args.tiny else folder}"
          + ("" if args.tiny or (folder / 'model.json').is_file() else "  (NOT SHIPPED YET: every run needs it)"))
    for r in runs:
        est = per_run.get(r, (steps - ft) * sps["mr_s2"] + ft * sps["student"]) + FIXED_SECONDS_PER_RUN
        total += est * len(args.seeds)
        gives = [x for x in rows if READ_FROM.get(x, (x, ""))[0] == r]
        reused = [sd for sd in args.seeds if r == "lcmr_s2_log" and headline_run(sd, args) is not None]
        print(f"  {r:22s} {est / 60:6.1f} min per seed  -> rows {', '.join(gives)}"
              + (f"  (finished headline run reused for seed(s) {reused})" if reused else ""))
    print(f"Expected: about {total / 60:.0f} min of one idle CPU core (estimated s/step at batch 24, not measured "
          f"for these models: {SECONDS_PER_STEP}), so about {total / 60 / max(1, args.jobs):.0f} min wall with "
          f"--jobs {args.jobs} on {args.jobs} idle cores; slower when other work shares the cores, much faster on "
          "a GPU")
    return total


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    p.add_argument("--teacher", type=Path, default=None, metavar="DIR",
                   help="a shipped teacher folder (compressor teacher ship) in place of the headline's")
    p.add_argument("--kd-alpha", type=float, default=1e-3, help="lattice KD weight (the lattice_kd row)")
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
    p.add_argument("--tiny", action="store_true", help="smoke test: a tiny teacher shipped into --work, a tiny "
                                                       "corpus and models, a few steps, 2 seeds")
    p.add_argument("--render", action="store_true", help="write RESULTS.md from --out's result JSON files, run "
                                                          "nothing")
    args = p.parse_args(argv)
    if args.tiny:
        args.seeds = args.seeds[:2]
        if args.work == REPO / "runs" / "lcmr_reproduction":
            args.work = REPO / "runs" / "lcmr_reproduction_tiny"
        if args.prefix == "lcmr":
            args.prefix = "lcmr_tiny"
    args.work = args.work.resolve()
    if args.teacher is not None:
        args.teacher = args.teacher.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        print(render(args.out).read_text(encoding="utf-8"))
        return 0
    rows = [r for r in ROWS if r in args.rows]
    plan(args, rows)
    if args.plan:
        return 0
    t0 = time.time()
    if args.tiny and args.teacher is None:
        args.teacher = ship_tiny_teacher(args)
    if args.report_only:
        return reportfinished(args, rows)
    folder = teacher_folder(args, headline(args))
    if not (folder / "model.json").is_file():
        raise SystemExit(f"no shipped teacher at {folder}: ship it first (see specs/rnnt_teacher.yaml), or pass "
                         "--teacher DIR")
    order = [(r, s) for s in args.seeds for r in runs_of(rows)]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each job is a `compressor run` subprocess
        jobs = {(r, s): pool.submit(run_row, r, s, args) for r, s in order}
        dirs = {k: f.result() for k, f in jobs.items()}
    data = {r: [dict(collect(dirs[(READ_FROM.get(r, (r, ""))[0], s)], READ_FROM.get(r, ("", "student"))[1]), seed=s)
                for s in args.seeds] for r in rows}
    return write_results(args, data, (time.time() - t0) / 60)


def reportfinished(args: argparse.Namespace, rows: list[str]) -> int:
    """Results from the finished runs only (an interrupted benchmark): rows list the seeds they have."""
    dirs: dict[tuple[str, int], Path] = {}
    for s in args.seeds:
        for r in runs_of(rows):
            found = (headline_run(s, args) if r == "lcmr_s2_log" else None) \
                or finished(args.work, hashed(build_spec(r, s, args))["name"])
            if found is not None:
                dirs[(r, s)] = found
    data = {r: [dict(collect(dirs[(READ_FROM.get(r, (r, ""))[0], s)], READ_FROM.get(r, ("", "student"))[1]), seed=s)
                for s in args.seeds if (READ_FROM.get(r, (r, ""))[0], s) in dirs] for r in rows}
    # wall time: from the first run's start (its directory's timestamp) to the last run's end
    starts = [dt.datetime.strptime(d.name[:15], "%Y%m%d-%H%M%S").timestamp() for d in dirs.values()]
    ends = [(d / "final" / "COMPLETE").stat().st_mtime for d in dirs.values()]
    print(f"{len(dirs)} of {len(runs_of(rows)) * len(args.seeds)} runs finished", flush=True)
    return write_results(args, data, (max(ends) - min(starts)) / 60 if dirs else 0.0)


def write_results(args: argparse.Namespace, data: dict[str, list[dict[str, Any]]], wall_minutes: float) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    machine = {"machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, "
                          f"{args.threads or 'all'} torch thread(s) per run, device {args.device})",
               "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "torch": torch.__version__, "wall_minutes": wall_minutes, "task": headline(args)["task"]}
    prefix = args.prefix
    machine["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                       text=True).stdout.strip()
    args.setup = setup_text(args)
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
