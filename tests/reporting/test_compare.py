"""``compressor compare``: two tiny runs side by side (a markdown table and one PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import write_spec
from support.reliability import cli, one_line, tiny

from compressor.run.engine import run_spec


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("compare")
    runs = []
    for seed in (3, 4):
        spec = tiny(tmp, seed=seed)
        spec["name"] = f"tiny_seed{seed}"
        runs.append(run_spec(write_spec(tmp / f"spec{seed}.yaml", spec)))
    return runs


def test_compare_two_runs(two_runs: list[Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    code, err = cli(capsys, "compare", *two_runs, "--out", out)
    assert code == 0, err
    md = (out / "compare.md").read_text()
    png = (out / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # three panels of curves
    rows = [line for line in md.splitlines() if line.startswith("| tiny_seed")]
    assert len(rows) == 4  # teacher and student of each run
    header = next(line for line in md.splitlines() if line.startswith("| run |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:4] == ["run", "model", "parameters", "test/accuracy"]
    assert "test/error_rate" not in columns  # 1 - accuracy: the table shows one of the two
    for run in two_runs:
        final = json.loads((run / "final" / "COMPLETE").read_text())
        name = run.parent.name
        for model in ("teacher", "student"):
            row = next(r for r in rows if r.startswith(f"| {name} | {model} |"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert cells[2] == f"{final['parameters'][model]:,}"
            assert float(cells[3]) == pytest.approx(final["final"][model]["test/accuracy"], abs=1e-4)
    assert "![" in md and "(compare.png)" in md


def test_compare_refuses_what_it_cannot_do(two_runs: list[Path], tmp_path: Path, capsys) -> None:
    code, err = cli(capsys, "compare", two_runs[0], "--out", two_runs[1] / "cmp")
    assert code == 2 and "lies inside the run directory" in one_line(err)
    assert not (two_runs[1] / "cmp").exists()
    code, err = cli(capsys, "compare", two_runs[0], tmp_path, "--out", tmp_path / "cmp")
    assert code == 2 and f"{tmp_path} is not a run directory" in one_line(err)


def test_kd_run_and_its_baseline_line_up_per_model(two_runs: list[Path], tmp_path: Path, capsys) -> None:
    """A KD run's student (its second stage) stands beside the baseline's student (its only stage), not beside
    the KD run's teacher stage; runs are labelled by what differs between them."""
    from compressor.reporting.compare import differences, model_curve, model_spans, read_run

    spec = tiny(tmp_path, name="tiny_baseline")
    spec["stages"] = [{**spec["stages"][1], "name": "train_student", "plugins": [], "frozen": []}]
    del spec["teacher"]
    spec["evaluate"]["models"] = ["student"]
    baseline = run_spec(write_spec(tmp_path / "baseline.yaml", spec))
    kd, base = read_run(two_runs[0]), read_run(baseline)
    assert [(n, x0) for _, n, x0, _ in model_spans(kd)["student"]] == [("distil", 0)]
    assert [n for _, n, _, _ in model_spans(kd)["teacher"]] == ["train_teacher"]
    assert [n for _, n, _, _ in model_spans(base)["student"]] == ["train_student"] and "teacher" not in \
        model_spans(base)
    kd_x, kd_y = model_curve(kd, "student", "loss/task", evaluation=False)
    base_x, _ = model_curve(base, "student", "loss/task", evaluation=False)
    assert kd_x[0] == base_x[0] == 1  # both start at the student's first step (not the KD run's step 13)
    distil = [r["loss/task"] for r in kd.records if r.get("stage") == "distil" and "loss/task" in r]
    assert kd_y == distil
    differences([kd, base])
    assert kd.differs[0] == "stages: train_teacher → distil" and base.differs[0] == "stages: train_student"
    assert any(d.startswith("teacher={") for d in kd.differs)  # a section the baseline lacks: named once
    assert not any(d.startswith("teacher.") for d in kd.differs)
    out = tmp_path / "cmp"
    code, err = cli(capsys, "compare", two_runs[0], baseline, "--out", out)
    assert code == 0, err
    md = (out / "compare.md").read_text()
    assert "differs: stages: train_teacher → distil" in md and "differs: stages: train_student" in md


def test_legend_labels_fit_one_line_of_the_figure(two_runs: list[Path]) -> None:
    from compressor.reporting.compare import legend_label, read_run

    run = read_run(two_runs[0])
    run.label = "tiny_kd/20261206-213857"
    run.differs = [f"stages.distil.plugins=[{{alpha: complement, loss: kl, name: logit_kd, n: {i}}}]"
                   for i in range(3)] + ["x" * 300]
    label = legend_label(run)
    assert len(label) <= 200 and label.endswith("…") and label.startswith("tiny_kd/20261206-213857: stages.")
    run.differs = ["seed=3"]
    assert legend_label(run) == "tiny_kd/20261206-213857: seed=3"
