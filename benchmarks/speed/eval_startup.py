"""Start-up of ``compressor eval``: seconds from launch until the evaluation begins (its ``started`` progress
line), for several versions side by side, with the feature cache warm and cold.

    python benchmarks/speed/eval_startup.py --tree before=/tmp/before,/tmp/venv-before/bin/python \
        --tree after=.,/tmp/venv-after/bin/python --run-dir RUN_DIR [--repeats 3]

``warm``: the project cache as it is (corpus, features and tokenizer of the run's data already there). ``cold``:
a fresh ``COMPRESSOR_CACHE`` holding only a link to the synthetic corpora, so a version that rebuilds the run's
dataset to learn its vocabulary and feature sizes extracts the features again; one that loads the models from
their descriptions computes only the split it evaluates. Trees take turns; medians are printed as a Markdown
table (``--out`` writes it too).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def time_to_start(python: str, tree: Path, run_dir: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds until the evaluation's ``started`` line, seconds until the command ended)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-m", "compressor", "eval", str(run_dir), "--models", "student"], cwd=tree,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COMPRESSOR_PROGRESS": "lines", **env})
    started = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if started is None and "evaluation:" in line and "started" in line:
            started = time.perf_counter() - t0
    if proc.wait() != 0:
        raise SystemExit(f"{tree}: compressor eval failed with {proc.returncode}")
    total = time.perf_counter() - t0
    return (started if started is not None else total), total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", action="append", required=True, metavar="NAME=PATH[,PYTHON]")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    trees = {}
    for item in args.tree:
        name, _, rest = item.partition("=")
        path, _, python = rest.partition(",")
        trees[name] = (Path(path).resolve(), python or "python")
    home_cache = Path(os.environ.get("COMPRESSOR_CACHE", Path.home() / ".cache" / "compressor"))
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    names = list(trees)
    for cache in ("warm", "cold"):
        for i in range(args.repeats):
            for name in names[i % len(names):] + names[:i % len(names)]:
                tree, python = trees[name]
                env: dict[str, str] = {}
                scratch = None
                if cache == "cold":
                    scratch = Path(tempfile.mkdtemp(prefix="eval-startup-"))
                    (scratch / "corpora").symlink_to(home_cache / "corpora")
                    env["COMPRESSOR_CACHE"] = str(scratch)
                try:
                    sample = time_to_start(python, tree, args.run_dir.resolve(), env)
                finally:
                    if scratch is not None:
                        shutil.rmtree(scratch, ignore_errors=True)
                results.setdefault((cache, name), []).append(sample)
                print(f"{cache} {name} #{i}: until evaluation {sample[0]:.1f} s, in all {sample[1]:.1f} s",
                      flush=True)
    base = names[0]
    lines = ["| cache | " + " | ".join(f"{n}: start-up (s) | {n}: in all (s)" for n in names)
             + " | " + " | ".join(f"{n}/{base} start-up" for n in names[1:]) + " |",
             "|---" * (1 + 2 * len(names) + len(names) - 1) + "|"]
    for cache in ("warm", "cold"):
        med = {n: (statistics.median(s[0] for s in results[(cache, n)]),
                   statistics.median(s[1] for s in results[(cache, n)])) for n in names}
        lines.append(f"| {cache} | " + " | ".join(f"{med[n][0]:.1f} | {med[n][1]:.1f}" for n in names) + " | "
                     + " | ".join(f"{med[n][0] / med[base][0]:.2f}" for n in names[1:]) + " |")
    table = "\n".join(lines)
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeats}\n{table}")
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
