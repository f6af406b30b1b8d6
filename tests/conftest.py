"""Shared test helpers: tiny specs, CLI runner, single-threaded torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
SPECS = Path(__file__).resolve().parent / "specs"

torch.set_num_threads(1)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600
            ) -> subprocess.CompletedProcess:
    """Run ``python -m compressor ARGS`` in a subprocess and capture its output."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "compressor", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def tiny_spec(tmp_path: Path) -> dict:
    """The tiny KD spec as a dict, writing its runs under tmp_path."""
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    return spec
