"""benchmarks/gpu_check.py on the CPU: its plan and arguments, the bf16 autocast path, the torchrun DDP launch
(gloo), and the engine specs it derives (the paper-size ones validated, a tiny one run)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from support import load_benchmark, write_spec

from compressor.spec import load_spec

gpu = load_benchmark("gpu_check")


def test_plan_fits_eight_minutes_and_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    args = gpu.parse_args(["--plan"])
    assert (args.device, args.size, args.precision, args.nproc) == ("cuda", "paper", "bf16", 1)
    parts = gpu.plan(args)
    assert len(parts) == 6 and sum(s for _, s in parts) <= 8 * 60
    assert any("torchrun --nproc_per_node 1" in what for what, _ in parts)
    assert gpu.main(["--plan"]) == 0 and "about" in capsys.readouterr().out
    for bad in (["--steps", "0"], ["--parts", "nothing"], ["--size", "huge"]):
        with pytest.raises(SystemExit) as e:
            gpu.parse_args(["--device", "cpu", *bad])
        assert e.value.code == 2
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as e:
            gpu.parse_args([])
        assert e.value.code == 2 and "no CUDA device" in capsys.readouterr().err


def test_bf16_autocast_path_on_cpu() -> None:
    got = gpu.throughput("lcmr_student", "tiny", torch.device("cpu"), steps=1, warmup=0)
    assert got["fp32"]["output_dtype"] == "torch.float32" and got["bf16"]["output_dtype"] == "torch.bfloat16"
    assert math.isfinite(got["fp32"]["loss"]) and math.isfinite(got["bf16"]["loss"])
    assert got["bf16_speedup"] > 0 and got["bf16"]["peak_memory_mb"] > 0
    assert "lcmr_student" in gpu.line(got) and "bf16/fp32 speed" in gpu.line(got)


def test_torchrun_ddp_launch_with_gloo_on_cpu(tmp_path: Path) -> None:
    args = gpu.parse_args(["--device", "cpu", "--size", "tiny", "--steps", "1", "--warmup", "0", "--nproc", "2",
                           "--out", str(tmp_path)])
    assert gpu.ddp_command(args)[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node"]
    got = gpu.run_ddp(args)
    assert got["ok"], got.get("stderr")
    assert (got["world_size"], got["backend"], got["ranks_agree"]) == (2, "gloo", True)
    assert got["output_dtype"] == "torch.bfloat16"


def test_engine_specs_at_paper_size_are_valid_and_a_tiny_one_runs(tmp_path: Path) -> None:
    args = gpu.parse_args(["--device", "cpu", "--size", "paper", "--engine-steps", "7", "--out", str(tmp_path)])
    for which in gpu.ENGINE_SPECS:
        spec = gpu.engine_spec(which, args, tmp_path)
        assert all(st["steps"] == 7 for st in spec["stages"]) and "export" not in spec
        assert spec["trainer"]["precision"] == "bf16" and spec["evaluate"]["models"] == ["student"]
        loaded = load_spec(write_spec(tmp_path / f"{which}.yaml", spec), check_machine=False)
        assert loaded.spec.student.args()["size"] == "paper"
    assert gpu.engine_spec("recipe", args, tmp_path)["student"]["preset"] == "15x5"
    tiny = gpu.parse_args(["--device", "cpu", "--size", "tiny", "--engine-steps", "2", "--out", str(tmp_path)])
    assert gpu.ENGINE_SPECS["lcmr"].name == "rnnt_lcmr_paper.yaml"  # the headline's shipped teacher has one size
    got = gpu.run_engine("lcmr", tiny, tmp_path)
    assert got["ok"], got.get("stderr")
    assert set(got["stage_seconds"]) == {"teacher", "lcmr"}
