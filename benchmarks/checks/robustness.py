"""Robustness of the headline's models, before and after: WER on voices no training speaker uses (``test``), on the
training voices (``test_seen``) and on the same test sentences spoken by synthesisers no training corpus uses
(``heldout``: SVOX Pico and Hibari), for the teacher, the compressed student and the student trained alone, over
seeds, from finished runs of two specs:

    # before: the headline as it was (a teacher trained in the run on the 58-word small corpus), per seed
    compressor run OLD_HEADLINE.yaml --set seed=S --set output_dir=runs/before   # with evaluate.sets.heldout
    # after: specs/rnnt_lcmr.yaml (the shipped teacher, the large open-vocabulary corpus), per seed
    compressor run specs/rnnt_lcmr.yaml --set seed=S --set output_dir=runs/after
    python benchmarks/checks/robustness.py --before runs/before/rnnt_lcmr --after runs/after/rnnt_lcmr

(``--run`` adds a single run directory to a side, e.g. a fresh clone's; ``--side NAME=FOLDER`` adds a side of any
name, e.g. the 58-word corpus trained for voices it never heard:
``--side "58 words, voices"=runs/voices/rnnt_lcmr``.) Prints a markdown table (mean ± std over seeds, and the
unseen/seen ratio per model), the paired claims "student better than the student alone" per test set and, for
every side after the first, "better than the first side" per model and set (95% t-intervals over seeds, paired by
seed); ``--out`` writes the tables and a JSON of every number. The two sides are
different corpora (a closed 58-word grammar against thousands of words), so their absolute WERs do not compare;
the ratios and the held-out column say how much of what a model learned is the voices it heard.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: stats, reuse
import stats  # noqa: E402
from reuse import finished_in  # noqa: E402

MODELS = ("teacher", "student", "student_alone")
SETS = ("test", "test_seen", "heldout")


def read_run(run_dir: Path) -> dict[str, Any]:
    """seed and {model: {set: wer}} of one finished run (``final/COMPLETE``)."""
    complete = json.loads((run_dir / "final" / "COMPLETE").read_text(encoding="utf-8"))
    seed = int(json.loads((run_dir / "environment.json").read_text(encoding="utf-8")).get("seed", -1)) \
        if (run_dir / "environment.json").is_file() else -1
    spec = (run_dir / "resolved_spec.yaml").read_text(encoding="utf-8")
    for line in spec.splitlines():
        if line.startswith("seed:"):
            seed = int(line.split(":", 1)[1])
    wer: dict[str, dict[str, float]] = {}
    for model in MODELS:
        final = complete.get("final", {}).get(model, {})
        row = {s: float(final[f"{s}/wer"]) for s in ("test", "test_seen") if f"{s}/wer" in final}
        held = complete.get("sets", {}).get("final", {}).get(model, {}).get("heldout")
        if held:
            row["heldout"] = float(held["wer"])
        if row:
            wer[model] = row
    return {"run": str(run_dir), "seed": seed, "wer": wer}


def runs_of(folder: Path | None, extra: list[Path]) -> list[dict[str, Any]]:
    dirs = finished_in(folder) if folder else []
    return [read_run(d) for d in [*dirs, *extra]]


def table(sides: dict[str, list[dict[str, Any]]]) -> tuple[list[str], dict[str, Any]]:
    lines = ["| recipe | model | seeds | test (unseen voices) | test_seen (seen voices) | held-out synthesisers "
             "| unseen / seen |", "|---|---|---:|---:|---:|---:|---:|"]
    out: dict[str, Any] = {}
    for side, runs in sides.items():
        for model in MODELS:
            per = {s: {r["seed"]: r["wer"][model][s] for r in runs if s in r["wer"].get(model, {})} for s in SETS}
            ratio = {k: per["test"][k] / per["test_seen"][k] for k in per["test"].keys() & per["test_seen"].keys()
                     if per["test_seen"][k] > 0}
            if not per["test"]:
                continue
            out.setdefault(side, {})[model] = {**per, "ratio": ratio}
            cells = [stats.fmt(per[s], 100, 1, "%") if per[s] else "-" for s in SETS]
            lines.append(f"| {side} | {model} | {len(per['test'])} | {' | '.join(cells)} | "
                         f"{stats.fmt(ratio, 1, 2) if ratio else '-'} |")
    return lines, out


def claims(out: dict[str, Any]) -> list[str]:
    lines = ["| recipe | set | student better than the student alone (WER points, paired by seed) | verdict |",
             "|---|---|---|---|"]
    for side, models in out.items():
        if "student" not in models or "student_alone" not in models:
            continue
        for s in SETS:
            diff = stats.paired(models["student"][s], models["student_alone"][s], higher_is_better=False)
            lines.append(f"| {side} | {s} | {diff.text(100, 1)} | {diff.verdict} |")
    return lines


def against_first(out: dict[str, Any]) -> list[str]:
    """Every later side against the first, per model and set: WER points lower, paired by seed."""
    names = list(out)
    if len(names) < 2:
        return []
    first = names[0]
    lines = [f"| recipe | model | set | better than {first} (WER points, paired by seed) | verdict |",
             "|---|---|---|---|---|"]
    for side in names[1:]:
        for model in MODELS:
            if model not in out[side] or model not in out[first]:
                continue
            for s in (*SETS, "ratio"):
                diff = stats.paired(out[side][model][s], out[first][model][s], higher_is_better=False)
                if diff.n:
                    shown = diff.text(1, 2) if s == "ratio" else diff.text(100, 1)
                    lines.append(f"| {side} | {model} | {'unseen / seen' if s == 'ratio' else s} | {shown} | "
                                 f"{diff.verdict} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, default=None, help="folder of finished runs of the earlier headline")
    p.add_argument("--after", type=Path, default=None, help="folder of finished runs of specs/rnnt_lcmr.yaml")
    p.add_argument("--run", action="append", default=[], metavar="SIDE=RUN_DIR",
                   help="one more finished run for a side (before|after)")
    p.add_argument("--side", action="append", default=[], metavar="NAME=FOLDER",
                   help="a folder of finished runs as one more side, named NAME (after before and after)")
    p.add_argument("--out", type=Path, default=None, help="write robustness.md and robustness.json here")
    args = p.parse_args(argv)
    extra: dict[str, list[Path]] = {"before": [], "after": []}
    for item in args.run:
        side, _, path = item.partition("=")
        extra.setdefault(side, []).append(Path(path))
    sides = {"before": runs_of(args.before, extra["before"]), "after": runs_of(args.after, extra["after"])}
    for item in args.side:
        name, _, path = item.partition("=")
        if not name or not path:
            p.error(f"--side {item!r}: give NAME=FOLDER")
        sides[name] = runs_of(Path(path), extra.get(name, []))
    sides = {k: v for k, v in sides.items() if v}
    lines, out = table(sides)
    compared = against_first(out)
    text = "\n".join([*lines, "", *claims(out), *(["", *compared] if compared else [])]) + "\n"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "robustness.md").write_text(text, encoding="utf-8")
        (args.out / "robustness.json").write_text(json.dumps({"sides": sides, "summary": out}, indent=1),
                                                  encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
