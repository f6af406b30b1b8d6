"""Experiment tracking: TensorBoard by default, Weights & Biases offline, with the spec, metrics and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import SPECS, run_cli, write_spec

pytest.importorskip("wandb", reason="the optional wandb extra is not installed (pip install -e '.[wandb]')")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tracking")
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["output_dir"] = str(tmp / "runs")
    spec["trainer"]["tracking"] = ["tensorboard", "wandb"]
    for st in spec["stages"]:
        st["epochs"] = 1
    proc = run_cli("run", str(write_spec(tmp / "spec.yaml", spec)), cwd=tmp,
                   env={"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_PROJECT": "compressor-tests"})
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp / "runs" / "tiny_kd").iterdir()
    return run_dir


def test_tensorboard_has_spec_metrics_and_plots(tracked: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tracked / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"distil/loss/logit_kd", "distil/loss/task", "distil/valid/accuracy", "train_teacher/loss/task",
            "final/student/test/accuracy"} <= scalars
    steps = [e.step for e in acc.Scalars("distil/loss/logit_kd")]
    records = [r for r in map(json.loads, (tracked / "metrics.jsonl").read_text().splitlines())
               if r.get("stage") == "distil" and "loss/logit_kd" in r]
    assert steps == [r["step"] for r in records]  # each stage against its own steps
    assert "plots/overview" in acc.Tags()["images"]
    spec_text = acc.Tensors("spec/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "name: tiny_kd" in spec_text


def test_wandb_offline_run_has_spec_metrics_and_plots(tracked: Path) -> None:
    (offline,) = (tracked / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")  # the run's records (protobuf): config, history, summary
    data = log.read_bytes()
    assert (tracked / "wandb_id").read_text().strip() in log.name  # a resume continues this run
    for text in ("tiny_kd", "train_teacher", "logit_kd", "distil/step", "distil/loss/logit_kd",
                 "distil/valid/accuracy", "final/student/test/accuracy", "plots/overview"):
        assert text.encode() in data, text
    plots = {p.name.split("_")[0] for p in (offline / "files" / "media" / "images" / "plots").glob("*.png")}
    assert "overview" in plots
