"""Reliability: exports and evaluation outputs never write into, over or beside a run's own files, replace
only their own previous outputs, and leave no temporary folder behind on any failure."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import write_spec
from support.reliability import cli, dead_pid, one_line, snapshot, tiny

from compressor.core.errors import UserError
from compressor.export.api import MANIFEST
from compressor.export.exporter import OnnxExporter
from compressor.run.engine import run_spec


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run whose spec exports (so RUN/export is a real export with its manifest)."""
    tmp = tmp_path_factory.mktemp("finished")
    spec = tiny(tmp, export={"name": "onnx", "bench_utterances": 2, "valid_utterances": 8,
                             "parity_batch_sizes": [1, 3]})
    return run_spec(write_spec(tmp / "spec.yaml", spec))


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


def test_the_run_export_has_a_manifest_of_every_file(finished: Path) -> None:
    manifest = json.loads((finished / "export" / MANIFEST).read_text())
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {str(p.relative_to(finished / "export")) for p in (finished / "export").rglob("*") if p.is_file()}
    assert listed == on_disk - {MANIFEST} and "model.onnx" in listed
    assert manifest["producer"] == "compressor export" and manifest["run_dir"] == str(finished.resolve())
    assert not _temporaries(finished.parent)


@pytest.mark.parametrize("target", [
    ".", "..", "../..", "final", "checkpoints", "final/sub", "metrics.jsonl", "export/sub", "plots",
    "link-to-run", "link-to-final"])
@pytest.mark.parametrize("force", [False, True])
def test_out_over_around_or_inside_the_run_is_refused(finished: Path, capsys, tmp_path: Path, target: str,
                                                      force: bool) -> None:
    if target.startswith("link"):
        out = tmp_path / target
        out.symlink_to(finished if target == "link-to-run" else finished / "final")
    else:
        out = finished / target
    before = snapshot(finished.parent.parent)
    code, err = cli(capsys, "export", finished, "--out", out, *(["--force"] if force else []))
    line = one_line(err)
    assert code == 2 and ("run directory" in line or "holds the run" in line), line
    assert snapshot(finished.parent.parent) == before, "the run's files changed"
    assert not _temporaries(finished.parent.parent) and not _temporaries(tmp_path)


def test_out_that_is_a_file_or_below_one(finished: Path, capsys, tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("precious")
    for out, fragment in ((f, "is not a directory"), (f / "sub", "is not a directory")):
        code, err = cli(capsys, "export", finished, "--out", out, "--force")
        assert code == 2 and fragment in one_line(err)
    assert f.read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_folders_that_are_not_previous_exports_are_never_replaced(finished: Path, capsys, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, err = cli(capsys, "export", finished, "--out", mine, "--force")
    assert code == 2 and "not an export" in one_line(err)
    # a previous export that a user has added files to
    prev = tmp_path / "prev"
    shutil.copytree(finished / "export", prev)
    (prev / "my_results.csv").write_text("1,2")
    code, err = cli(capsys, "export", finished, "--out", prev, "--force")
    assert code == 2 and "my_results.csv" in one_line(err)
    # a forged manifest does not make a folder an export
    (mine / MANIFEST).write_text('{"producer": "someone else"}')
    code, err = cli(capsys, "export", finished, "--out", mine, "--force")
    assert code == 2 and "not an export" in one_line(err)
    assert (mine / "notes.txt").read_text() == "keep me" and (prev / "my_results.csv").exists()
    assert not _temporaries(tmp_path)


def test_another_runs_export_folder_is_refused(finished: Path, capsys, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(finished, other)
    before = snapshot(other)
    code, err = cli(capsys, "export", finished, "--out", other / "export", "--force")
    assert code == 2 and "another run" in one_line(err)
    assert snapshot(other) == before


def _failing_exporter(exc: BaseException):
    def export(self, job):
        (Path(job.out_dir) / "model.onnx").write_bytes(b"half written")
        raise exc

    return export


@pytest.mark.parametrize(("exc", "code"), [
    (RuntimeError("onnx exploded"), 1), (KeyboardInterrupt(), 130), (UserError("cannot export this"), 2),
    (MemoryError(), 1)], ids=["crash", "ctrl-c", "user-error", "out-of-memory"])
def test_every_failure_removes_its_temporary_folder(finished: Path, capsys, tmp_path: Path, monkeypatch,
                                                   exc: BaseException, code: int) -> None:
    monkeypatch.setattr(OnnxExporter, "export", _failing_exporter(exc))
    # leftovers of exports killed with SIGKILL, beside the new target and inside the run
    stale_out = tmp_path / f".new.tmp-{dead_pid()}"
    stale_out.mkdir()
    (stale_out / "encoder.onnx").write_bytes(b"x")
    stale_run = finished / f".export.tmp-{dead_pid()}"
    stale_run.mkdir()
    before = snapshot(finished / "export")
    got, err = cli(capsys, "export", finished, "--out", tmp_path / "new")
    assert got == code, err
    if code != 130:
        one_line(err)
    assert not (tmp_path / "new").exists() and not _temporaries(tmp_path) and not _temporaries(finished)
    # --force over the run's own export: the previous export survives a failed replacement
    got, err = cli(capsys, "export", finished, "--force")
    assert got == code and snapshot(finished / "export") == before and not _temporaries(finished)


def test_an_export_in_progress_is_not_disturbed(finished: Path, capsys, tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / f".new.tmp-{sleeper.pid}"
        busy.mkdir()
        code, err = cli(capsys, "export", finished, "--out", tmp_path / "new")
        assert code == 2 and f"in progress (PID {sleeper.pid})" in one_line(err)
        assert busy.exists()
    finally:
        os.kill(sleeper.pid, signal.SIGKILL)
        sleeper.wait()


def test_force_replaces_a_previous_export_atomically(finished: Path, capsys, tmp_path: Path) -> None:
    prev = tmp_path / "prev"
    shutil.copytree(finished / "export", prev)
    (prev / "model.onnx").write_bytes(b"an older model")
    code, err = cli(capsys, "export", finished, "--out", prev, "--force")
    assert code == 0, err
    manifest = json.loads((prev / MANIFEST).read_text())
    assert (prev / "model.onnx").read_bytes() != b"an older model"
    assert {f["path"] for f in manifest["files"]} == {
        str(p.relative_to(prev)) for p in prev.rglob("*") if p.is_file()} - {MANIFEST}
    assert not _temporaries(tmp_path)


# -- eval outputs follow the same rules ---------------------------------------------------------------------------


def test_eval_outputs(finished: Path, capsys, tmp_path: Path) -> None:
    before = snapshot(finished)
    for out in (finished / "metrics.jsonl", finished / "final" / "x.json", finished / "x.json", finished):
        code, err = cli(capsys, "eval", finished, "--out", out, "--force")
        assert code == 2 and "run directory" in one_line(err)
    assert snapshot(finished) == before
    user = tmp_path / "user.json"
    user.write_text('{"mine": 1}')
    code, err = cli(capsys, "eval", finished, "--out", user, "--force")
    assert code == 2 and "not a previous output" in one_line(err) and user.read_text() == '{"mine": 1}'
    code, err = cli(capsys, "eval", finished, "--split", "tset")
    assert code == 2 and "did you mean 'test'" in one_line(err)

    out = tmp_path / "res.json"
    assert cli(capsys, "eval", finished, "--out", out, "--models", "student")[0] == 0
    result = json.loads(out.read_text())
    assert result["producer"] == "compressor eval" and "accuracy" in result["models"]["student"]
    code, err = cli(capsys, "eval", finished, "--out", out)
    assert code == 2 and "--force" in one_line(err)
    assert cli(capsys, "eval", finished, "--out", out, "--force", "--models", "student")[0] == 0
    own = finished / "eval" / "test.json"
    assert cli(capsys, "eval", finished, "--out", own, "--models", "student")[0] == 0 and own.exists()
    shutil.rmtree(finished / "eval")
    assert not _temporaries(tmp_path) and not _temporaries(finished)
