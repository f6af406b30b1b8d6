"""``evaluate.extra_splits``: more splits evaluated and reported beside the main one (e.g. seen voices), and a
split the dataset lacks refused before any training."""

from __future__ import annotations

import json
from pathlib import Path

from support import run_cli, write_spec


def test_extra_splits_are_reported_side_by_side(tmp_path: Path, tiny_spec: dict) -> None:
    spec = dict(tiny_spec, evaluate={"split": "test", "extra_splits": ["valid"], "models": ["student"]})
    for stage in spec["stages"]:
        stage["epochs"] = 1
    done = run_cli("run", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = next((tmp_path / "runs").glob("*/*/final/COMPLETE")).parent.parent
    final = json.loads((run_dir / "final" / "COMPLETE").read_text())["final"]["student"]
    assert {"test/accuracy", "valid/accuracy"} <= set(final)
    summary = (run_dir / "summary.md").read_text()
    assert "## Final evaluation (all 32 test utterances; all 32 valid utterances)" in summary
    section = summary.split("## Final evaluation", 1)[1]
    header = next(line for line in section.splitlines() if line.startswith("| model |"))
    assert "test/accuracy" in header and "valid/accuracy" in header


def test_unknown_evaluation_split_is_refused_before_training(tmp_path: Path, tiny_spec: dict) -> None:
    spec = dict(tiny_spec, evaluate={"split": "test", "extra_splits": ["test_seen"]})
    done = run_cli("run", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert done.returncode == 2
    assert "evaluate.extra_splits[0]" in done.stderr and "no split 'test_seen'" in done.stderr
    assert not list((tmp_path / "runs").glob("*/*/checkpoints/*.pt"))  # nothing trained


def test_reference_result_is_reported_beside_the_model(tmp_path: Path, tiny_spec: dict) -> None:
    ref = {"model": "student", "label": "student trained alone (benchmark, 3 seeds)",
           "metrics": {"test/accuracy": 0.5}, "std": {"test/accuracy": 0.02},
           "source": "benchmarks/seed002_lcmr/results/lcmr_table.md"}
    spec = dict(tiny_spec, evaluate={"split": "test", "models": ["student"], "references": [ref]})
    for stage in spec["stages"]:
        stage["epochs"] = 1
    done = run_cli("run", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = next((tmp_path / "runs").glob("*/*/final/COMPLETE")).parent.parent
    acc = json.loads((run_dir / "final" / "COMPLETE").read_text())["final"]["student"]["test/accuracy"]
    summary = (run_dir / "summary.md").read_text()
    rows = [line for line in summary.split("## Final evaluation", 1)[1].splitlines() if line.startswith("| ")]
    own = next(i for i, line in enumerate(rows) if line.startswith("| student |"))
    assert rows[own + 1].startswith("| *reference: student trained alone (benchmark, 3 seeds)* |")
    assert "0.5000 ± 0.0200" in rows[own + 1]
    rel = 100 * (acc - 0.5) / 0.5
    assert (f"- student against the reference *student trained alone (benchmark, 3 seeds)* "
            f"(benchmarks/seed002_lcmr/results/lcmr_table.md): test/accuracy {acc:.4f} vs 0.5000 "
            f"({rel:+.1f}% relative)") in summary


def test_reference_for_a_model_not_evaluated_is_refused(tmp_path: Path, tiny_spec: dict) -> None:
    spec = dict(tiny_spec, evaluate={"split": "test", "models": ["student"], "references": [
        {"model": "teacher", "label": "x", "metrics": {"test/accuracy": 0.5}}]})
    done = run_cli("validate", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert done.returncode == 2
    assert "evaluate.references[0].model" in done.stderr and "does not evaluate" in done.stderr
    spec["evaluate"]["references"] = [{"label": "x", "metrics": {"test/accuracy": ".nan"}}]
    done = run_cli("validate", str(write_spec(tmp_path / "spec2.yaml", spec)))
    assert done.returncode == 2 and "evaluate.references[0].metrics" in done.stderr
