"""DistributedDataParallel on CPU (gloo, 2 processes) matches one process with the same global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support import run_cli, write_spec


@pytest.mark.skipif(shutil.which("torchrun") is None and sys.platform != "linux", reason="needs torchrun")
def test_two_gloo_processes_match_one(tiny_spec: dict, tmp_path: Path) -> None:
    tiny_spec["teacher"]["dropout"] = 0.0  # per-rank dropout masks differ from one process's by design
    one = write_spec(tmp_path / "one.yaml", dict(tiny_spec, output_dir=str(tmp_path / "one")))
    two = write_spec(tmp_path / "two.yaml", dict(tiny_spec, output_dir=str(tmp_path / "two")))
    assert run_cli("run", str(one)).returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29533", "-m", "compressor", "run", str(two)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("run finished") == 1  # only rank 0 reports
    (a,) = (tmp_path / "one").glob("*/*/final")
    (b,) = (tmp_path / "two").glob("*/*/final")
    for name in ("teacher", "student"):
        x = torch.load(a / f"{name}.pt", weights_only=True)
        y = torch.load(b / f"{name}.pt", weights_only=True)
        for key in x:
            diff = float((x[key] - y[key]).abs().max())
            assert diff < 1e-4, f"{name}.{key} differs by {diff}"
    sa = (a.parent / "summary.md").read_text().split("## Final")[1].split("## Plots")[0]
    sb = (b.parent / "summary.md").read_text().split("## Final")[1].split("## Plots")[0]
    assert sa == sb
