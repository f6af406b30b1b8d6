"""Helpers shared by the reliability suite (``tests/test_reliability_*.py``): hostile and careless input must
end with one clear line, the right exit code, no traceback, nothing lost and nothing left behind."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import yaml

from compressor.cli import main
from support import SPECS


def tiny(tmp_path: Path, **changes: object) -> dict:
    """The tiny KD spec writing its runs under ``tmp_path/runs``, with top-level ``changes``."""
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    spec.update(changes)
    return spec


def cli(capsys, *args: str) -> tuple[int, str]:
    """``compressor ARGS`` in this process: exit code and stderr."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    """The single error line of ``err`` (fails on a traceback or several error lines)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a hash of its content (folders and links marked), to prove nothing
    changed."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link"
        elif p.is_dir():
            out[rel] = "dir"
        elif rel.endswith("run.lock"):
            out[rel] = "lock"  # rewritten (same content, our PID) by whoever takes the lock
        else:
            out[rel] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def dead_pid() -> int:
    """The PID of a process that has exited (for planting stale temporaries)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
