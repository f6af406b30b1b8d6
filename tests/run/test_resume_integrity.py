"""A resumed run is the run that was started: a ``resolved_spec.yaml`` edited after the last checkpoint is
refused (keys listed, exit 2) unless ``--accept-spec-change`` records the change; ``final/COMPLETE`` is written
last, so a signal during the final writes leaves a run that ``--resume`` finishes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support import write_spec
from support.reliability import cli, one_line, tiny

from compressor.run.engine import run_spec


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run (its last checkpoint is the end of its last stage)."""
    tmp = tmp_path_factory.mktemp("reference")
    return run_spec(write_spec(tmp / "spec.yaml", tiny(tmp)))


def _killed_copy(reference: Path, tmp_path: Path) -> Path:
    """The run as if killed after its last checkpoint, before its final writes."""
    copy = tmp_path / "runs" / "tiny_kd" / reference.name
    shutil.copytree(reference, copy)
    shutil.rmtree(copy / "final")
    return copy


def _edit(run_dir: Path, change) -> None:
    path = run_dir / "resolved_spec.yaml"
    spec = yaml.safe_load(path.read_text())
    change(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


EDITS = {
    "seed": (lambda s: s.update(seed=4), "seed"),
    "lr": (lambda s: s["stages"][1]["optimizer"].update(lr=0.02), "stages[1].optimizer.lr"),
    "epochs": (lambda s: s["stages"][1].update(epochs=3), "stages[1].epochs"),
    "train_size": (lambda s: s["data"].update(train_size=64), "data.train_size"),
    "batch_size": (lambda s: s["stages"][1].update(batch_size=8), "stages[1].batch_size"),
    "stage_list": (lambda s: s["stages"].append({**s["stages"][1], "name": "again"}), "stages"),
    "hidden": (lambda s: s["student"].update(hidden=16), "student.hidden"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_spec_is_refused_with_the_keys_that_differ(reference, tmp_path: Path, capsys, edit) -> None:
    run_dir = _killed_copy(reference, tmp_path)
    change, key = EDITS[edit]
    _edit(run_dir, change)
    code, err = cli(capsys, "run", "--resume", run_dir)
    line = one_line(err)
    assert code == 2, err
    assert "was changed after the run's last checkpoint" in line and key in line and "--accept-spec-change" in line
    assert not (run_dir / "final" / "COMPLETE").exists()


def test_accept_spec_change_records_the_change(reference, tmp_path: Path, capsys) -> None:
    run_dir = _killed_copy(reference, tmp_path)
    _edit(run_dir, lambda s: s.update(seed=4))
    code, err = cli(capsys, "run", "--resume", run_dir, "--accept-spec-change")
    assert code == 0, err
    (record,) = [json.loads(x) for x in (run_dir / "spec_changes.jsonl").read_text().splitlines()]
    assert record["keys"] == ["seed"] and record["changes"] == [{"key": "seed", "before": 3, "after": 4}]
    assert (run_dir / "final" / "COMPLETE").exists()


def test_accepting_a_changed_model_size_is_still_one_clear_line(reference, tmp_path: Path, capsys) -> None:
    run_dir = _killed_copy(reference, tmp_path)
    _edit(run_dir, lambda s: s["student"].update(hidden=16))
    code, err = cli(capsys, "run", "--resume", run_dir, "--accept-spec-change")
    assert code == 2 and "does not match the model the spec builds" in one_line(err), err


def test_accept_spec_change_needs_resume(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path / "spec.yaml", tiny(tmp_path))
    code, err = cli(capsys, "run", spec, "--accept-spec-change")
    assert code == 2 and "--accept-spec-change goes with --resume" in one_line(err)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_final_writes_leaves_a_run_that_resume_finishes(tmp_path: Path, capsys,
                                                                            signum: int) -> None:
    """The signal arrives while the plots are drawn (after the final weights): the run is not "finished"
    without its summary, and ``--resume`` finishes it."""
    path = write_spec(tmp_path / "spec.yaml", tiny(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "compressor", "run", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not list((tmp_path / "runs").glob("*/*/plots")):
        time.sleep(0.01)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    (run_dir,) = (tmp_path / "runs" / "tiny_kd").iterdir()
    if (run_dir / "final" / "COMPLETE").exists():  # whatever the timing, "finished" means everything is there
        assert (run_dir / "summary.md").exists() and (run_dir / "plots" / "overview.png").exists()
        assert "--resume" not in err
        return  # the signal came after the last write
    assert proc.returncode in (130, 143) and f"compressor run --resume {run_dir}" in err, err
    code, err = cli(capsys, "run", "--resume", run_dir)
    assert code == 0, err
    assert (run_dir / "summary.md").exists() and (run_dir / "plots" / "overview.png").exists()
    assert json.loads((run_dir / "final" / "COMPLETE").read_text())["final"]["student"]
