"""Reliability: resume after a kill at any moment, one process per run directory, a resumed run keeps its
spec, and killed writers leave nothing behind for good."""

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
import torch
import yaml
from support import write_spec
from support.reliability import cli, dead_pid, one_line, snapshot, tiny

from compressor.core.rundir import LOCK_FILE, RunLock
from compressor.run.engine import run_spec


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_log_exact(run_dir: Path, steps_per_stage: list[int]) -> None:
    """One record per optimizer step of every stage, in order, and one final record per evaluated model."""
    records = _records(run_dir)
    for i, total in enumerate(steps_per_stage):
        steps = [r["step"] for r in records if r.get("stage_index") == i and "type" not in r]
        assert steps == list(range(1, total + 1)), f"stage {i}: {steps[:5]}... ({len(steps)} records)"
    finals = [r["model"] for r in records if r.get("type") == "final"]
    assert sorted(finals) == ["student", "teacher"], finals


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


def _final_weights(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.stem: torch.load(p, weights_only=True) for p in sorted((run_dir / "final").glob("*.pt"))}


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = _final_weights(a), _final_weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        for key, tensor in wa[name].items():
            assert torch.equal(tensor, wb[name][key]), f"{name}.{key}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished tiny run (12 + 6 steps) and its spec file."""
    tmp = tmp_path_factory.mktemp("reference")
    spec = write_spec(tmp / "spec.yaml", tiny(tmp))
    return run_spec(spec), spec


def _killed_copy(reference: tuple[Path, Path], tmp_path: Path) -> Path:
    run_dir, _ = reference
    copy = tmp_path / "runs" / "tiny_kd" / run_dir.name
    shutil.copytree(run_dir, copy)
    (copy / "final" / "COMPLETE").unlink()
    return copy


def test_killed_before_the_first_checkpoint(reference, tmp_path: Path, capsys) -> None:
    """The log of an attempt killed before its first checkpoint is dropped: the resumed run starts over."""
    run_dir = _killed_copy(reference, tmp_path)
    (run_dir / "checkpoints" / "last.pt").unlink()
    for p in (run_dir / "final").iterdir():
        p.unlink()
    code, err = cli(capsys, "run", "--resume", run_dir)
    assert code == 0, err
    _assert_log_exact(run_dir, [12, 6])
    _same_weights(run_dir, reference[0])


def test_killed_during_the_final_writes(reference, tmp_path: Path, capsys) -> None:
    run_dir = _killed_copy(reference, tmp_path)
    (run_dir / "final" / "student.pt").unlink()
    pid = dead_pid()
    for stale in (run_dir / "final" / f".teacher.pt.tmp-{pid}", run_dir / "checkpoints" / f".last.pt.tmp-{pid}",
                  run_dir / f".metrics.jsonl.tmp-{pid}"):
        stale.write_bytes(b"half")
    (run_dir / f".export.tmp-{pid}").mkdir()
    (run_dir / f".export.tmp-{pid}" / "model.onnx").write_bytes(b"half")
    # the original command line, spec included, is accepted: it is the spec the run started with
    code, err = cli(capsys, "run", reference[1], "--resume", run_dir)
    assert code == 0, err
    _assert_log_exact(run_dir, [12, 6])  # the final evaluation is recorded once, not twice
    _same_weights(run_dir, reference[0])
    assert not _temporaries(run_dir)


def test_resume_keeps_the_spec_it_started_with(reference, tmp_path: Path, capsys) -> None:
    run_dir = _killed_copy(reference, tmp_path)
    other = yaml.safe_load(reference[1].read_text())
    other["stages"][0]["epochs"] = 3
    other_spec = write_spec(tmp_path / "other.yaml", other)
    before = snapshot(run_dir)
    for args, fragment in (((other_spec,), "differs at stages[0].epochs (3 here, 2 in the run)"),
                           (("--set", "seed=4"), "differs at seed (4 here, 3 in the run)"),
                           ((reference[1], "--set", "stages[1].plugins[0].temperature=4"), "temperature")):
        code, err = cli(capsys, "run", *args, "--resume", run_dir)
        line = one_line(err)
        assert code == 2 and fragment in line and "--resume" in line, line
    assert snapshot(run_dir) == before


@pytest.mark.parametrize(("damage", "fragment"), [
    (lambda d: (d / "checkpoints" / "last.pt").write_bytes(b""), "is empty (0 bytes)"),
    (lambda d: (d / "checkpoints" / "last.pt").write_bytes(b"garbage, not a checkpoint"), "cannot load checkpoint"),
    (lambda d: torch.save({"weight": torch.zeros(2)}, d / "checkpoints" / "last.pt"), "not a resume point"),
    (lambda d: torch.save({"kind": "mid_stage", "stage_index": 7, "models": {}}, d / "checkpoints" / "last.pt"),
     "stage_index 7"),
    (lambda d: (d / "resolved_spec.yaml").write_text("name: [unclosed\n"), "malformed YAML"),
    (lambda d: (d / "resolved_spec.yaml").unlink(), "not a run directory"),
    (lambda d: shutil.rmtree(d), "no such directory"),
], ids=["empty", "garbage", "state-dict", "bad-stage", "bad-spec", "no-spec", "gone"])
def test_damaged_run_directories(reference, tmp_path: Path, capsys, damage, fragment: str) -> None:
    run_dir = _killed_copy(reference, tmp_path)
    damage(run_dir)
    code, err = cli(capsys, "run", "--resume", run_dir)
    line = one_line(err)
    assert code == 2 and fragment in line, line


def test_resume_without_a_spec_or_run_dir(capsys) -> None:
    code, err = cli(capsys, "run")
    assert code == 2 and "--resume" in one_line(err)


def test_one_process_per_run_directory_and_sigkill_resume(tmp_path: Path, capsys) -> None:
    """A real process killed with SIGKILL mid-stage: while it runs, a second resume is refused with its PID;
    after the kill the lock is free and the resumed run's log has every step exactly once."""
    spec = tiny(tmp_path)
    spec["stages"][1].update(epochs=None, steps=80, checkpoint_every=7, grad_accum=1, batch_size=8)
    path = write_spec(tmp_path / "spec.yaml", spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "compressor", "run", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_dir = None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            found = list((tmp_path / "runs").glob("*/*/metrics.jsonl"))
            if found and sum(1 for line in found[0].read_text().splitlines()
                             if '"stage_index": 1' in line) >= 20:
                run_dir = found[0].parent
                break
            time.sleep(0.05)
        assert run_dir is not None, "the run finished before it could be tested"
        code, err = cli(capsys, "run", "--resume", run_dir)
        assert code == 2 and f"PID {proc.pid}" in one_line(err)
        code, err = cli(capsys, "export", run_dir)
        assert code == 2 and f"PID {proc.pid}" in one_line(err)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert not (run_dir / "final" / "COMPLETE").exists()
    code, err = cli(capsys, "run", "--resume", run_dir)
    assert code == 0, err
    _assert_log_exact(run_dir, [12, 80])
    assert not _temporaries(run_dir)
    with RunLock(run_dir):  # released at the end of the resumed run
        assert (run_dir / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_sigterm_unwinds_and_the_run_resumes(tmp_path: Path, capsys) -> None:
    spec = tiny(tmp_path)
    spec["stages"][1].update(epochs=None, steps=80, checkpoint_every=7, grad_accum=1, batch_size=8)
    path = write_spec(tmp_path / "spec.yaml", spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "compressor", "run", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if list((tmp_path / "runs").glob("*/*/checkpoints/last.pt")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err, err
    (run_dir,) = (tmp_path / "runs" / "tiny_kd").iterdir()
    assert f"compressor run --resume {run_dir}" in err
    assert not _temporaries(run_dir)
    code, err = cli(capsys, "run", "--resume", run_dir)
    assert code == 0, err
    _assert_log_exact(run_dir, [12, 80])


def test_a_run_from_a_bigger_machine_resumes_and_evaluates_here(reference, tmp_path: Path, capsys) -> None:
    """Machine checks (CPUs, output directory) apply when a run starts, not when it is resumed or evaluated
    elsewhere: a spec written for 4096 CPUs still resumes (on the CPUs there are) and evaluates."""
    run_dir = _killed_copy(reference, tmp_path)
    spec_file = run_dir / "resolved_spec.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["trainer"]["threads"] = 4096
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        code, err = cli(capsys, "run", "--resume", run_dir)
        assert code == 0, err
        assert torch.get_num_threads() <= (os.cpu_count() or 1)
        assert cli(capsys, "eval", run_dir, "--models", "student")[0] == 0
    finally:
        torch.set_num_threads(1)


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from compressor.core.rundir import new_run_dir

    with ThreadPoolExecutor(8) as pool:
        dirs = list(pool.map(lambda _: new_run_dir(tmp_path / "runs", "same"), range(16)))
    assert len(set(dirs)) == 16 and all((d / "checkpoints").is_dir() for d in dirs)
