"""A full, read-only or forbidden file system is named as one: one line with the path and the cause, exit
code 2, nothing half-written presented as done, and a run that made progress resumes once it is fixed.

The file systems are real: a small tmpfs (full, or read-only) where this process may mount one (root), else
the test is skipped; a folder made read-only mid-run (a read-only bind mount as root, permissions otherwise).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import write_spec
from support.reliability import cli, one_line, tiny


def _error_line(err: str) -> str:
    """The one ``error:`` line (a run that made progress also prints its ``--resume`` command above it)."""
    assert "Traceback" not in err, err
    lines = [x for x in err.strip().splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs",
                                       str(path)):
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]


def _slow(tmp_path: Path, out: Path) -> dict:
    spec = tiny(tmp_path)
    spec["output_dir"] = str(out)
    spec["stages"][1].update(epochs=None, steps=60, checkpoint_every=5, grad_accum=1, batch_size=8)
    return spec


def test_a_full_disk_mid_run_is_named_and_the_run_resumes_once_freed(tmp_path: Path, capsys) -> None:
    with tmpfs(tmp_path / "small", "160k") as small:
        spec = _slow(tmp_path, small / "runs")
        code, err = cli(capsys, "run", write_spec(tmp_path / "spec.yaml", spec))
        line = _error_line(err)
        assert code == 2 and "No space left on device" in line and str(small) in line, err
        (run_dir,) = (small / "runs" / "tiny_kd").iterdir()
        assert not (run_dir / "final" / "COMPLETE").exists()
        assert not _temporaries(run_dir)
        assert f"compressor run --resume {run_dir}" in err or not (run_dir / "checkpoints" / "last.pt").exists()
        assert _mount("-o", "remount,size=64m", str(small))  # space freed
        code, err = cli(capsys, "run", "--resume", run_dir)
        assert code == 0, err
        assert (run_dir / "final" / "COMPLETE").exists() and (run_dir / "summary.md").exists()


def test_no_space_at_all_leaves_no_stub_run_directory(tmp_path: Path, capsys) -> None:
    with tmpfs(tmp_path / "full", "64k") as full:
        with open(full / "filler", "wb") as f:
            with contextlib.suppress(OSError):
                f.write(b"\0" * 1024 * 1024)
        spec = _slow(tmp_path, full / "runs")
        code, err = cli(capsys, "run", write_spec(tmp_path / "spec.yaml", spec))
        assert code == 2 and "No space left on device" in one_line(err), err
        assert not [p for p in (full / "runs").rglob("*") if p.is_file()] if (full / "runs").exists() else True


def test_checkpoints_turned_read_only_mid_run(tmp_path: Path, capsys) -> None:
    spec = _slow(tmp_path, tmp_path / "runs")
    path = write_spec(tmp_path / "spec.yaml", spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "compressor", "run", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    found: list[Path] = []
    while time.time() < deadline and proc.poll() is None and not found:
        found = list((tmp_path / "runs").glob("*/*/checkpoints/last.pt"))
        time.sleep(0.02)
    assert found, proc.communicate()[1]
    folder = found[0].parent
    bound = os.geteuid() == 0 and _mount("--bind", str(folder), str(folder))
    if os.geteuid() == 0 and not bound:  # root ignores permissions, and this root may not mount
        proc.kill()
        proc.communicate()
        pytest.skip("root without the right to mount: no way to make a folder read-only")
    try:
        if bound:
            assert _mount("-o", "remount,bind,ro", str(folder))
        else:
            proc.send_signal(signal.SIGSTOP)
            folder.chmod(0o555)
            proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if bound:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        else:
            folder.chmod(0o755)
    assert proc.returncode == 2 and str(folder) in _error_line(err), err
    assert "Read-only file system" in err or "Permission denied" in err
    run_dir = folder.parent
    assert not (run_dir / "final" / "COMPLETE").exists()
    code, err = cli(capsys, "run", "--resume", run_dir)  # fixed: the run resumes
    assert code == 0, err


def test_export_to_a_place_that_cannot_be_written(tmp_path: Path, capsys) -> None:
    from compressor.run.engine import run_spec

    run_dir = run_spec(write_spec(tmp_path / "spec.yaml", tiny(tmp_path)))
    code, err = cli(capsys, "export", run_dir, "--out", "/proc/x")
    assert code == 2 and "/proc/x" in one_line(err), err
    with tmpfs(tmp_path / "ro", "1m", "ro") as ro:
        code, err = cli(capsys, "export", run_dir, "--out", ro / "onnx")
        line = one_line(err)
        assert code == 2 and str(ro / "onnx") in line and ("Read-only" in line or "not writable" in line), err


def test_a_feature_cache_build_on_a_full_disk(tmp_path: Path) -> None:
    import math

    import soundfile as sf
    import torch

    from compressor.core.errors import DiskError
    from compressor.data.extract import extract_features
    from compressor.data.utterance import Utterance

    t = torch.arange(48000) / 16000
    sf.write(str(tmp_path / "a.wav"), (0.3 * torch.sin(2 * math.pi * 200 * t)).numpy(), 16000)
    utts = [Utterance(id=str(i), audio=tmp_path / "a.wav", text="a") for i in range(8)]  # ~100 KB of features
    with tmpfs(tmp_path / "cache", "48k") as cache:
        with pytest.raises(DiskError, match="No space left on device") as caught:
            extract_features(utts, "nemo", cache)
        assert str(cache / "features") in str(caught.value)
        assert not list((cache / "features").iterdir())  # nothing half-written stays, nothing looks done
