"""A whole run: artefacts, plots, summary, evaluation CLI; LR schedules; accumulation; safe checkpoints."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest
import torch
from support import run_cli, write_spec

from compressor.core.checkpoint import load_checkpoint, save_atomic
from compressor.core.errors import UserError
from compressor.run.engine import run_spec
from compressor.run.finished import evaluate_run, load_run
from compressor.run.lr import ConstantLR, CosineLR, ExponentialLR, LinearLR, LRScheduleArgs


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml
    from support import SPECS

    tmp = tmp_path_factory.mktemp("run")
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["output_dir"] = str(tmp / "runs")
    return run_spec(write_spec(tmp / "spec.yaml", spec))


def test_run_directory_has_everything(finished_run: Path) -> None:
    for name in ("resolved_spec.yaml", "environment.json", "metrics.jsonl", "summary.md", "final/COMPLETE",
                 "final/teacher.pt", "final/student.pt", "checkpoints/last.pt", "checkpoints/distil-best.pt"):
        assert (finished_run / name).exists(), name
    env = json.loads((finished_run / "environment.json").read_text())
    assert env["packages"]["torch"].startswith("2.11") and "python" in env
    records = [json.loads(x) for x in (finished_run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "type" not in r]
    assert {"loss/task", "loss/logit_kd", "weight/logit_kd", "kd_weight", "lr"} <= set(steps[-1])
    assert [r["epoch"] for r in records if r.get("type") == "eval" and r["stage"] == "distil"] == [0, 1]
    # the KD weight followed exp(1 - t) over epochs t = 1, 2 and alpha = 1 - beta
    distil = [r for r in steps if r["stage"] == "distil"]
    assert {round(r["kd_weight"], 6) for r in distil} == {1.0, round(math.exp(-1), 6)}
    assert all(abs(r["weight/task"] + r["kd_weight"] - 1) < 1e-9 for r in distil)
    plots = {p.stem for p in (finished_run / "plots").glob("*.png")}
    assert {"loss_task", "loss_logit_kd", "lr", "kd_weight", "valid_accuracy"} <= plots
    summary = (finished_run / "summary.md").read_text()
    assert "| teacher | seq_classifier | 13,956 |" in summary and "| student | seq_classifier | 612 |" in summary
    assert "test/accuracy" in summary


def test_eval_cli_and_load_run(finished_run: Path) -> None:
    run = load_run(finished_run)
    assert set(run.models) == {"teacher", "student"}
    metrics = evaluate_run(finished_run, "test", ["student"])
    final = json.loads((finished_run / "final" / "COMPLETE").read_text())["final"]["student"]
    assert metrics["student"]["accuracy"] == pytest.approx(final["test/accuracy"])
    done = run_cli("eval", str(finished_run), "--split", "valid")
    assert done.returncode == 0 and "student (valid): loss=" in done.stdout
    bad = run_cli("eval", str(finished_run), "--split", "nope")
    assert bad.returncode == 2 and "no split 'nope'" in bad.stderr


def test_unfinished_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a run directory"):
        load_run(tmp_path)
    (tmp_path / "resolved_spec.yaml").write_text("name: x\n")
    with pytest.raises(UserError, match="no finished student"):
        load_run(tmp_path)


def test_gradient_accumulation_matches_the_large_batch(tmp_path: Path, tiny_spec: dict) -> None:
    def final_student(accum: int, batch: int, out: str) -> dict:
        spec = dict(tiny_spec, output_dir=str(tmp_path / out))
        spec["stages"] = [dict(spec["stages"][0], train=["student"], batch_size=batch, grad_accum=accum,
                               lr_schedule={"name": "constant"}, optimizer={"name": "sgd", "lr": 0.1})]
        spec["teacher"] = None
        spec["evaluate"] = {"models": ["student"]}
        run_dir = run_spec(write_spec(tmp_path / f"{out}.yaml", spec))
        return torch.load(run_dir / "final" / "student.pt", weights_only=True)

    big = final_student(1, 16, "big")
    small = final_student(4, 4, "small")
    for key in big:
        torch.testing.assert_close(big[key], small[key], atol=1e-5, rtol=1e-4)


def test_lr_factor_shapes() -> None:
    warm_cos = CosineLR(LRScheduleArgs(warmup_steps=10, min_lr=0.0), 1.0, 110)
    assert warm_cos(0) == pytest.approx(0.1) and warm_cos(9) == pytest.approx(1.0)
    assert warm_cos(10) == pytest.approx(1.0) and warm_cos(60) == pytest.approx(0.5)
    assert warm_cos(110) == pytest.approx(0.0, abs=1e-12)
    exp = ExponentialLR(LRScheduleArgs(min_lr=1e-5, decay_start=0.2), 5e-4, 100)
    assert exp(10) == 1.0 and exp(100) == pytest.approx(1e-5 / 5e-4)  # seed 002: 5e-4 decays to 1e-5
    assert exp(60) == pytest.approx(math.sqrt(1e-5 / 5e-4))
    lin = LinearLR(LRScheduleArgs(min_lr=0.1), 1.0, 100)
    assert lin(50) == pytest.approx(0.55)
    # seed 003: cosine annealing after a warmup of 12% of the stage
    frac = CosineLR(LRScheduleArgs(warmup_fraction=0.12), 1.0, 100)
    assert frac(11) == pytest.approx(1.0) and frac(5) == pytest.approx(0.5) and frac(12) == pytest.approx(1.0)
    assert ConstantLR(LRScheduleArgs(), 1.0, 10)(7) == 1.0


def test_checkpoints_are_atomic_and_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_atomic({"w": torch.ones(2)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(2))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        torch.save({"x": Evil()}, f, pickle_module=pickle)
    with pytest.raises(UserError, match="cannot load checkpoint"):
        load_checkpoint(evil)


def test_steps_without_gradients_are_no_ops(tmp_path: Path, tiny_spec: dict) -> None:
    # The forward pass runs only frozen parameters (as a module-replacing step that drew only frozen teacher
    # modules does): the engine skips backward, the optimizer finds no gradient, nothing changes.
    spec = dict(tiny_spec, output_dir=str(tmp_path / "runs"))
    spec["stages"] = [dict(spec["stages"][0], train=["student"], frozen=["teacher"], forward="teacher",
                           epochs=1, eval={"every": "never"})]
    run_dir = run_spec(write_spec(tmp_path / "s.yaml", spec))
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in records if "type" not in r]) == 6  # 96 examples / 16: every step ran
    torch.manual_seed(spec["seed"] * 1000 + 1)  # the student's initial weights, as the engine built them
    from compressor.plugins import get_registry

    reg = get_registry()
    data = reg.build("dataset", spec["data"])
    initial = reg.build("model", spec["student"], info=data.info).state_dict()
    final = torch.load(run_dir / "final" / "student.pt", weights_only=True)
    for key in initial:
        assert torch.equal(initial[key], final[key]), key
