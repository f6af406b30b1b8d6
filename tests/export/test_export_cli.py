"""``compressor run`` with an export stage and ``compressor export RUN_DIR``: files, refusals, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from support import SPECS, run_cli, write_spec
from torch import nn

from compressor.core.errors import UserError
from compressor.export.base import ExportJob
from compressor.export.exporter import OnnxExportArgs, OnnxExporter, family_of


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export_cli")
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["output_dir"] = str(tmp / "runs")
    spec["export"] = {"name": "onnx", "bench_utterances": 4}
    proc = run_cli("run", str(write_spec(tmp / "spec.yaml", spec)), cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp / "runs" / "tiny_kd").iterdir()
    return run_dir


def test_run_exports_classifier(finished_run):
    export = finished_run / "export"
    assert (export / "model.onnx").exists() and (export / "labels.txt").exists()
    assert (export / "labels.txt").read_text().split() == ["class0", "class1", "class2", "class3"]
    summary = (finished_run / "summary.md").read_text()
    assert "## Export (onnx, classifier)" in summary and "| student ONNX fp32 |" in summary
    assert not list(finished_run.glob(".export.tmp-*"))


def test_export_refuses_existing_then_force_and_out(finished_run, tmp_path):
    proc = run_cli("export", str(finished_run))
    assert proc.returncode == 2 and "exists; pass --force" in proc.stderr
    proc = run_cli("export", str(finished_run), "--out", str(tmp_path / "exp"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "exp" / "model.onnx").exists()
    before = (finished_run / "export" / "model.onnx").stat().st_mtime_ns
    proc = run_cli("export", str(finished_run), "--force")
    assert proc.returncode == 0, proc.stderr
    assert (finished_run / "export" / "model.onnx").stat().st_mtime_ns != before


def test_export_any_model_by_name(finished_run, tmp_path):
    out = tmp_path / "teacher_export"
    proc = run_cli("export", str(finished_run), "--model", "teacher", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "export (onnx) of the teacher" in proc.stdout
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["model"] == "teacher" and (out / "README.md").read_text().startswith("# teacher (")
    report = json.loads((out / "export_report.json").read_text())
    variants = [r["variant"] for r in report["benchmark"]["rows"]]
    assert variants[:2] == ["teacher (PyTorch)", "teacher ONNX fp32"], variants  # no reference row of itself
    assert not any("student" in v for v in variants)
    assert json.loads((out / "export_manifest.json").read_text())["model"] == "teacher"
    proc = run_cli("export", str(finished_run), "--model", "teachr", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "no model 'teachr'" in proc.stderr and "did you mean 'teacher'" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_export_unfinished_run(finished_run, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(finished_run, broken)
    shutil.rmtree(broken / "export")
    (broken / "final" / "COMPLETE").unlink()
    proc = run_cli("export", str(broken))
    assert proc.returncode == 2 and "no finished student" in proc.stderr
    assert not (broken / "export").exists()


def test_export_checkpoint_of_another_family(finished_run, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(finished_run, broken)
    shutil.rmtree(broken / "export")
    torch.save({"weight": torch.zeros(3)}, broken / "final" / "student.pt")
    proc = run_cli("export", str(broken))
    assert proc.returncode == 2 and "does not match" in proc.stderr
    assert not (broken / "export").exists()


class _Unknown(nn.Module):
    def forward(self, batch):
        return {"logits": batch["features"].sum(1)}


class _Inexpressible(nn.Module):
    """A 'CTC model' using an op the ONNX exporter cannot express."""

    vocab_size = 3
    subsampling_factor = 1

    def forward_export(self, x, lengths):
        return torch.linalg.eigh(x @ x.transpose(1, 2))[0][:, None, :3].expand(-1, x.shape[2], -1)

    def output_lengths(self, lengths):
        return lengths


def test_unknown_family_is_a_user_error():
    with pytest.raises(UserError, match="does not know the model family of 'mystery'"):
        family_of(_Unknown(), {"name": "mystery"}, "regression")


def test_inexpressible_op_is_a_user_error(tmp_path):
    from support.tones import tone_data

    data = tone_data("nemo_ctc", sizes=(2, 1, 1))
    args = OnnxExportArgs()
    job = ExportJob(_Inexpressible(), "student", {"name": "weird"}, None, data, tmp_path, None, None, args)
    with pytest.raises(UserError, match="cannot export model.onnx to ONNX"):
        OnnxExporter(args).export(job)


def test_export_run_of_a_spec_without_export_section(tmp_path):
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    spec["stages"] = spec["stages"][:1]
    spec["stages"][0]["train"] = ["student"]
    spec["stages"][0]["epochs"] = 1
    del spec["teacher"]
    spec["evaluate"]["models"] = ["student"]
    proc = run_cli("run", str(write_spec(tmp_path / "spec.yaml", spec)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs" / "tiny_kd").iterdir()
    assert not (run_dir / "export").exists()
    proc = run_cli("export", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "export" / "model.onnx").exists() and (run_dir / "export" / "labels.txt").exists()
