"""A stage may train on its own data and task (an acoustic module pre-trained with CTC under a classifier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import run_cli, write_spec

from compressor.core.errors import SpecError
from compressor.spec import load_spec


def test_a_stage_trains_on_its_own_data(tmp_path: Path, tiny_spec: dict) -> None:
    tiny_spec["stages"][0]["data"] = {"name": "synthetic_features", "num_classes": 4, "feature_dim": 8,
                                      "train_size": 32, "valid_size": 16, "test_size": 16, "seed": 99}
    done = run_cli("run", str(write_spec(tmp_path / "s.yaml", tiny_spec)))
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs" / "tiny_kd").iterdir()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = {i: [r for r in rows if r.get("stage_index") == i and "type" not in r] for i in (0, 1)}
    assert len(steps[0]) == 2 * 2  # 32 utterances / 16 per batch, 2 epochs
    assert len(steps[1]) == 2 * 3  # the spec's data: 96 / 16 = 6 batches, grad_accum 2, 2 epochs


def test_stage_data_and_task_are_validated(tmp_path: Path, tiny_spec: dict) -> None:
    tiny_spec["stages"][0]["data"] = {"name": "synthetic_features", "train_sise": 32}
    with pytest.raises(SpecError, match=r"stages\[0\]\.data\.train_sise: unknown key 'train_sise'; did you mean "
                                        r"'train_size'\?"):
        load_spec(write_spec(tmp_path / "a.yaml", tiny_spec))
    del tiny_spec["stages"][0]["data"]
    tiny_spec["stages"][0]["task"] = {"name": "ctcc"}
    with pytest.raises(SpecError, match=r"stages\[0\]\.task: unknown task 'ctcc'; did you mean 'ctc'\?"):
        load_spec(write_spec(tmp_path / "b.yaml", tiny_spec))


def test_validation_counts_the_batches_of_the_stage_own_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage with its own data validates on it, and the progress total counts its batches, not the spec's."""
    from types import SimpleNamespace

    import torch

    from compressor.run import trainer
    from compressor.spec import StageSpec

    class Data:
        def __init__(self, batches: int) -> None:
            self.batches = batches

        def loader(self, split: str, batch_size: int, **kw: object) -> list[dict]:
            return [{}] * self.batches

        def num_batches(self, split: str, batch_size: int, **kw: object) -> int:
            return self.batches

    totals: list[int] = []

    def track(batches, label, total, **kw):
        totals.append(total)
        return batches

    monkeypatch.setattr(trainer, "track", track)
    stage = StageSpec(name="pre", train=["student"], steps=1)
    run = SimpleNamespace(seed=0, is_main=False, device=torch.device("cpu"), data=Data(99), log=lambda r: None)
    task = SimpleNamespace(evaluate=lambda model, batches, device: {"loss": float(len(list(batches)))})
    runner = SimpleNamespace(stage=stage, run=run, data=Data(3), task=task, metric="loss", mode="min", best=None,
                             index=0)
    ctx = SimpleNamespace(models={"student": torch.nn.Linear(1, 1)}, forward_model="student", training=True,
                          step=0, epoch=0)
    metrics = trainer.StageRunner._evaluate(runner, ctx)  # type: ignore[arg-type]
    assert totals == [3] and metrics[f"{stage.eval.split}/loss"] == 3.0
