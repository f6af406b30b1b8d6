"""Wall time of the commands a user waits on, for several versions of compressor side by side in one run.

    python benchmarks/speed/cli_speed.py --tree before=/tmp/before --tree after=. --run-dir RUN_DIR \
        [--repeats 5] [--heavy-repeats 2] [--commands validate,plugins,eval,export]

Each ``--tree NAME=PATH[,PYTHON]`` is a checkout of this repository (``git worktree add /tmp/before <commit>``).
Every command runs as ``PYTHON -m compressor ...`` with the tree as working directory; PYTHON defaults to the
interpreter running this script. A tree whose plugins' entry points differ from the installed ones (modules moved
since) needs its own PYTHON: a virtual environment with that tree installed (``pip install --no-deps -e TREE``).
Trees take turns within every repeat (the order rotates), so a machine whose load changes during the run affects
them alike; the medians and their ratios are reported, with the CPU seconds of each command and the load average
around it. ``RUN_DIR`` is a finished run (``final/COMPLETE``) that every tree can load; ``eval`` evaluates its
student on the test split, ``export`` exports it to a fresh temporary folder, ``export_refuse`` asks for an export
into a folder that is already there (the command's start-up until it refuses, exit code 2). One untimed ``eval`` and
``export`` per tree first fill the corpus and feature caches. ``validate`` checks each tree's own
``specs/rnnt_lcmr.yaml``.

Results: ``benchmarks/speed/results/cli_speed.{md,json}`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def commands(run_dir: Path, scratch: Path) -> dict[str, list[str]]:
    return {
        "validate": ["validate", "specs/rnnt_lcmr.yaml"],  # each tree's own headline spec
        "plugins": ["plugins"],
        "eval": ["eval", str(run_dir), "--models", "student"],
        "export": ["export", str(run_dir), "--out", str(scratch / "export-{tree}-{i}")],
        "export_refuse": ["export", str(run_dir), "--out", str(scratch)],
    }


#: exit codes a command is expected to end with (0 otherwise)
EXPECTED_EXIT = {"export_refuse": 2}


def run_once(tree: Path, argv: list[str], log: Path, python: str = sys.executable, expect: int = 0
             ) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log, "ab") as out:
        done = subprocess.run([python, "-m", "compressor", *argv], cwd=tree, stdout=out,
                              stderr=subprocess.STDOUT, env={**os.environ, "COMPRESSOR_PROGRESS": "lines"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != expect:
        raise SystemExit(f"{tree}: compressor {' '.join(argv)} ended with {done.returncode} (expected {expect}); "
                         f"see {log}")
    return {"wall_s": round(wall, 3), "cpu_s": round((after.ru_utime - before.ru_utime)
                                                     + (after.ru_stime - before.ru_stime), 3),
            "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}


def git_commit(tree: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", action="append", required=True, metavar="NAME=PATH[,PYTHON]")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=5, help="repeats of validate and plugins")
    p.add_argument("--heavy-repeats", type=int, default=2, help="repeats of eval and export")
    p.add_argument("--commands", default="validate,plugins,eval,export")
    p.add_argument("--out", type=Path, default=HERE / "results" / "cli_speed")
    args = p.parse_args()
    trees, pythons = {}, {}
    for item in args.tree:
        name, _, rest = item.partition("=")
        path, _, python = rest.partition(",")
        trees[name] = Path(path).resolve()
        pythons[name] = python or sys.executable
    scratch = Path(tempfile.mkdtemp(prefix="cli_speed-"))
    log = scratch / "commands.log"
    chosen = [c for c in args.commands.split(",") if c]
    table = commands(args.run_dir.resolve(), scratch)
    try:
        for name, tree in trees.items():  # caches: corpus, features, tokenizer (untimed)
            for command in ("eval", "export"):
                if command in chosen:
                    argv = [a.format(tree=name, i="warm") for a in table[command]]
                    print(f"warm-up: {name} {command}", flush=True)
                    run_once(tree, argv, log, pythons[name])
        samples: dict[str, dict[str, list[dict[str, float]]]] = {c: {t: [] for t in trees} for c in chosen}
        names = list(trees)
        for command in chosen:
            repeats = args.heavy_repeats if command in ("eval", "export", "export_refuse") else args.repeats
            for i in range(repeats):
                order = names[i % len(names):] + names[:i % len(names)]
                for name in order:
                    argv = [a.format(tree=name, i=i) for a in table[command]]
                    sample = run_once(trees[name], argv, log, pythons[name], EXPECTED_EXIT.get(command, 0))
                    samples[command][name].append(sample)
                    print(f"{command} {name} #{i}: {sample}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    base = names[0]
    header = ["command", *(f"{n} (s)" for n in names), *(f"{n}/{base}" for n in names[1:]),
              *(f"{n} CPU (s)" for n in names), "load average"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    summary = {}
    for command in chosen:
        med = {n: statistics.median(s["wall_s"] for s in samples[command][n]) for n in names}
        cpu = {n: statistics.median(s["cpu_s"] for s in samples[command][n]) for n in names}
        loads = [s[k] for n in names for s in samples[command][n] for k in ("load_before", "load_after")]
        summary[command] = {"median_wall_s": med, "median_cpu_s": cpu,
                            "ratio_to_" + base: {n: med[n] / med[base] for n in names[1:]}}
        lines.append("| " + " | ".join([command, *(f"{med[n]:.1f}" for n in names),
                                         *(f"{med[n] / med[base]:.2f}" for n in names[1:]),
                                         *(f"{cpu[n]:.1f}" for n in names),
                                         f"{min(loads):.1f}-{max(loads):.1f}"]) + " |")
    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"shared {os.cpu_count()}-core CPU VM (other jobs running beside it; see the load average)",
        "trees": {n: {"path": str(t), "commit": git_commit(t), "python": pythons[n]} for n, t in trees.items()},
        "run_dir": str(args.run_dir), "command": " ".join(sys.argv),
        "repeats": args.repeats, "heavy_repeats": args.heavy_repeats,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({**meta, "summary": summary, "samples": samples}, indent=1),
                                        encoding="utf-8")
    md = [f"# Command wall times, {', '.join(names)} side by side", "",
          f"{meta['machine']}; {meta['date']}; trees: "
          + ", ".join(f"{n} = {v['commit']}" for n, v in meta["trees"].items()) + ".", "",
          f"Command: `{meta['command']}`", "",
          f"Medians of {args.repeats} runs (validate, plugins) and {args.heavy_repeats} (eval, export), the trees "
          f"taking turns in rotating order; CPU = user + system seconds of the command.", "", *lines, ""]
    Path(f"{args.out}.md").write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
