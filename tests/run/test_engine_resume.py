"""Checkpoints are atomic and resume is exact: a run killed mid-stage and resumed ends bit-identical."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from support import run_cli, write_spec


def _final_weights(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.stem: torch.load(p, weights_only=True) for p in sorted((run_dir / "final").glob("*.pt"))}


def _only_run(root: Path) -> Path:
    runs = sorted(p for p in root.glob("*/*") if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def kill_mid_stage(spec: Path, runs: Path, stage_index: int, steps: tuple[int, int]) -> int:
    """Start ``compressor run spec`` and SIGKILL it once stage ``stage_index`` has logged a step in
    ``[steps[0], steps[1])`` (runs write under ``runs``); the step it was killed after."""
    proc = subprocess.Popen([sys.executable, "-m", "compressor", "run", str(spec)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    killed_at = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        found = list(runs.glob("*/*/metrics.jsonl"))
        if found:
            lines = found[0].read_text().splitlines()
            records = [json.loads(x) for x in lines[-3:] if x.strip().endswith("}")]
            mid = [r for r in records
                   if r.get("stage_index") == stage_index and steps[0] <= r.get("step", 0) < steps[1]]
            if mid:
                proc.send_signal(signal.SIGKILL)
                killed_at = mid[-1]["step"]
                break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert killed_at is not None, "the run finished (or never reached the stage) before it could be killed"
    return killed_at


def _long_spec(tiny_spec: dict, out: Path) -> dict:
    spec = dict(tiny_spec, output_dir=str(out))
    spec["stages"][0]["epochs"] = 1
    distil = spec["stages"][1]
    distil.update(epochs=None, steps=240, checkpoint_every=3, grad_accum=1, batch_size=8)
    distil["eval"] = {"every": 20}
    distil["plugins"][0]["weight"] = {"name": "exp_decay", "unit": "step"}
    spec["teacher"]["dropout"] = 0.2  # resume must also restore the RNG that dropout draws from
    return spec


def test_killed_run_resumes_bit_identical(tiny_spec: dict, tmp_path: Path) -> None:
    ref_spec = write_spec(tmp_path / "ref.yaml", _long_spec(tiny_spec, tmp_path / "ref"))
    done = run_cli("run", str(ref_spec))
    assert done.returncode == 0, done.stderr
    reference = _final_weights(_only_run(tmp_path / "ref"))

    spec = write_spec(tmp_path / "kill.yaml", _long_spec(tiny_spec, tmp_path / "kill"))
    kill_mid_stage(spec, tmp_path / "kill", stage_index=1, steps=(30, 200))
    run_dir = _only_run(tmp_path / "kill")
    assert not (run_dir / "final" / "COMPLETE").exists()
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["kind"] == "mid_stage" and ckpt["stage_index"] == 1 and ckpt["position"]["step"] < 240

    resumed = run_cli("run", str(spec), "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    final = _final_weights(run_dir)
    assert final.keys() == reference.keys()
    for name in reference:
        for key, tensor in reference[name].items():
            assert torch.equal(tensor, final[name][key]), f"{name}.{key} differs after resume"
    # The metrics log has exactly one record per step of the distil stage (no duplicates from the kill).
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r.get("stage_index") == 1 and "type" not in r]
    assert steps == list(range(1, 241))


def test_resume_refuses_finished_and_foreign_dirs(tiny_spec: dict, tmp_path: Path, capsys) -> None:
    from compressor.cli import main
    from compressor.run.engine import run_spec

    spec = write_spec(tmp_path / "s.yaml", tiny_spec)
    run_dir = run_spec(spec)
    assert main(["run", str(spec), "--resume", str(run_dir)]) == 2
    assert "already finished" in capsys.readouterr().err
    assert main(["run", str(spec), "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and "Traceback" not in err
