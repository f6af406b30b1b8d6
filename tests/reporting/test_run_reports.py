"""What a run tells its user: where progress goes (as --help says), every loss term in the progress lines,
plots and tables without repeated or constant series, and no untrained model reported beside the trained ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from support import SPECS, run_cli, write_spec

from compressor.run.plots import collect


@pytest.fixture(scope="module")
def teacher_off(tmp_path_factory) -> tuple[Path, object]:
    """tiny_kd with its teacher stage disabled, progress as lines (not a terminal)."""
    tmp = tmp_path_factory.mktemp("reports")
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["output_dir"] = str(tmp / "runs")
    spec["trainer"]["log_every"] = 1
    proc = run_cli("run", str(write_spec(tmp / "spec.yaml", spec)), "--set", "stages[0].enabled=false",
                   cwd=tmp, env={"COMPRESSOR_PROGRESS": "lines", "COMPRESSOR_PROGRESS_INTERVAL": "0"})
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp / "runs" / "tiny_kd").iterdir()
    return run_dir, proc


def test_progress_goes_where_run_help_says(teacher_off) -> None:
    _, proc = teacher_off
    help_text = " ".join(run_cli("run", "--help").stdout.split())
    said = re.search(r"Progress goes to (standard \w+) as timestamped lines", help_text)
    assert said, help_text
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\[\d\d:\d\d:\d\d\] stage", line)]
    assert lines, proc.stdout
    assert said.group(1) == "standard output"
    assert proc.stderr == ""  # errors only: there were none


def test_progress_lines_show_every_loss_term(teacher_off) -> None:
    _, proc = teacher_off
    epoch = [line for line in proc.stdout.splitlines() if "distil: epoch 1/2" in line]
    assert epoch, proc.stdout
    assert "loss/task " in epoch[0] and "loss/logit_kd " in epoch[0] and "kd_weight " in epoch[0]
    assert "valid/accuracy" in epoch[0] and "error_rate" not in epoch[0]  # 1 - accuracy: not repeated


def test_untrained_teacher_is_not_reported(teacher_off) -> None:
    run_dir, proc = teacher_off
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    assert results["untrained"] == ["teacher"]
    assert set(results["final"]) == {"student"}
    summary = (run_dir / "summary.md").read_text()
    assert "| teacher | " not in summary.split("## Final evaluation")[1]
    assert "smaller" not in summary and "smaller" not in proc.stdout
    table = proc.stdout.split("\nfinal evaluation (")[1].split("\n\n")[0]
    assert "student" in table and "teacher" not in table


def test_final_table_leaves_out_a_column_that_restates_another(teacher_off) -> None:
    run_dir, proc = teacher_off
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    assert "test/error_rate" in results["final"]["student"]  # kept for the scripts that read it
    table = proc.stdout.split("\nfinal evaluation (")[1].split("\n\n")[0]
    assert "accuracy" in table and "error_rate" not in table


def test_restated_keys_need_the_task_name_and_the_complement() -> None:
    from compressor.reporting.report import restated_keys

    rows = [{"test/accuracy": 0.25, "test/error_rate": 0.75, "test/wer": 0.5, "test/cer": 0.5,
             "seen/accuracy": 0.5, "seen/error_rate": 0.5}]
    keys = list(rows[0])
    assert restated_keys(keys, rows, {"error_rate"}) == {"test/error_rate", "seen/error_rate"}
    assert restated_keys(keys, rows, ()) == set()  # wer + cer = 1 here by chance: not named, kept
    rows[0]["test/error_rate"] = 0.7
    assert restated_keys(keys, rows, {"error_rate"}) == {"seen/error_rate"}


def test_plots_leave_out_repeated_and_constant_series() -> None:
    records = []
    for step in range(1, 6):
        records.append({"stage": "distil", "stage_index": 0, "step": step, "loss/task": 1.0 / step,
                        "loss/logit_kd": 2.0 / step, "weight/task": 0.5, "weight/logit_kd": 0.5,
                        "kd_weight": 0.5, "replacing_rate": step / 5, "lr": 0.01})
        records.append({"type": "eval", "stage": "distil", "stage_index": 0, "step": step,
                        "valid/accuracy": 0.1 * step, "valid/error_rate": 1 - 0.1 * step, "valid/loss": 1.0})
    series, _ = collect(records)
    assert "valid/accuracy" in series and "valid/error_rate" not in series
    assert "replacing_rate" in series and "loss/task" in series and "loss/logit_kd" in series
    assert not {"weight/task", "weight/logit_kd", "kd_weight", "lr"} & set(series)
