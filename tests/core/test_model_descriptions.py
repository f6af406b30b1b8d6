"""Every saved model describes itself: ``final/<model>.model.json`` beside ``final/<model>.pt``, so ``eval``,
``export`` and ``init_from`` rebuild a model without building its run's data."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from support import REPO, SPECS, run_cli, write_spec
from support.tiny_teacher import headline_overrides, ship_tiny_teacher

from compressor.cli.export import export_run
from compressor.core.errors import UserError
from compressor.run import engine, finished


def _run(tmp: Path, spec: dict | Path, overrides: list[str] | None = None) -> Path:
    if isinstance(spec, dict):
        spec["output_dir"] = str(tmp / "runs")
        spec = write_spec(tmp / "spec.yaml", spec)
    else:
        overrides = [f"output_dir={tmp / 'runs'}", *(overrides or [])]
    return engine.run_spec(spec, overrides)


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory) -> Path:
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["export"] = {"name": "onnx", "enabled": False, "bench_utterances": 4}
    return _run(tmp_path_factory.mktemp("classifier"), spec)


@pytest.fixture(scope="module")
def ctc_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("ctc"), yaml.safe_load((SPECS / "tiny_ctc.yaml").read_text()))


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """What a load did, in order: "data" when the run's data was built, "model NAME" when a model was built."""
    seen: list[str] = []
    build_data, load_described = finished.build_data, finished.load_described

    def spy_data(*a, **k):
        seen.append("data")
        return build_data(*a, **k)

    def spy_model(weights, *a, **k):
        seen.append(f"model {Path(weights).stem}")
        return load_described(weights, *a, **k)

    monkeypatch.setattr(engine, "build_data", spy_data)  # a run's data
    monkeypatch.setattr(finished, "build_data", spy_data)  # a finished run's, when it is loaded back
    monkeypatch.setattr(finished, "load_described", spy_model)
    return seen


def _old(run_dir: Path, tmp: Path) -> Path:
    """A copy of the run as an older version wrote it: no descriptions."""
    old = tmp / "old_run"
    shutil.copytree(run_dir, old)
    for p in (old / "final").glob("*.model.json"):
        p.unlink()
    return old


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_classifier_description(classifier_run):
    final = classifier_run / "final"
    for name, hidden in (("teacher", 32), ("student", 8)):
        desc = json.loads((final / f"{name}.model.json").read_text())
        assert desc["family"] == "seq_classifier" and desc["args"]["hidden"] == hidden
        assert desc["task"] == "classification"
        assert desc["units"] == ["class0", "class1", "class2", "class3"]
        assert desc["weights"] == {"file": f"{name}.pt", "sha256": _sha(final / f"{name}.pt")}
        assert desc["versions"]["torch"] == torch.__version__ and desc["versions"]["compressor"]
        assert desc["info"]["feature_dim"] == 8
        # written before the run is marked finished, which stays the last write
        assert (final / f"{name}.model.json").stat().st_mtime_ns <= (final / "COMPLETE").stat().st_mtime_ns


def test_ctc_description_and_tokenizer_beside_it(ctc_run):
    final = ctc_run / "final"
    desc = json.loads((final / "student.model.json").read_text())
    assert desc["family"] == "quartznet" and desc["args"]["preset"] == "5x1" and desc["task"] == "ctc"
    assert desc["features"] == {"kind": "nemo_ctc", "dim": 80, "frame_shift_ms": 10.0, "sample_rate": 16000,
                                "normalize": ""}
    assert desc["tokenizer"]["kind"] == "char" and desc["tokenizer"]["files"] == {"tokens_file": "student.tokens.txt"}
    tokens = [line.split()[0] for line in (final / "student.tokens.txt").read_text().splitlines() if line.split()]
    assert len(tokens) == len(desc["units"]) == desc["tokenizer"]["vocab_size"]


def test_eval_from_description_builds_the_model_before_any_data(classifier_run, ctc_run, calls):
    for run_dir, metric in ((classifier_run, "accuracy"), (ctc_run, "wer")):
        calls.clear()
        run = finished.load_run(run_dir, models=["student"])
        assert calls == ["model student"]  # the data is not built to load the model
        got = finished.evaluate_run(run_dir, "test", ["student"])
        final = json.loads((run_dir / "final" / "COMPLETE").read_text())["final"]["student"]
        assert got["student"][metric] == pytest.approx(final[f"test/{metric}"])
        assert calls == ["model student", "model student", "data"]  # the data only for the evaluation itself
        assert run.task is not None
    run = finished.load_run(ctc_run, models=["student"], splits=["test"])
    assert list(run.data.datasets) == ["test"]  # speech data reads just the split evaluated
    assert run.data.info["tokens"] == json.loads((ctc_run / "final" / "student.model.json").read_text())["units"]


def test_old_run_without_descriptions_evaluates_and_exports_as_before(classifier_run, tmp_path, calls):
    old = _old(classifier_run, tmp_path)
    got = finished.evaluate_run(old, "test", ["student"])
    final = json.loads((old / "final" / "COMPLETE").read_text())["final"]["student"]
    assert got["student"]["accuracy"] == pytest.approx(final["test/accuracy"])
    assert calls == ["data"]  # the old way: the data built to learn the model's sizes, no description read
    out = export_run(old, tmp_path / "exp")
    assert (out / "model.onnx").exists()


def test_a_description_without_every_data_fact_loads_the_old_way(classifier_run, tmp_path, calls):
    run = tmp_path / "run"
    shutil.copytree(classifier_run, run)
    path = run / "final" / "student.model.json"
    desc = json.loads(path.read_text())
    desc["info_left_out"] = ["an_object"]  # a data fact JSON could not hold
    path.write_text(json.dumps(desc))
    finished.load_run(run, models=["student"])
    assert calls == ["data"]


def test_export_from_description_loads_data_only_for_its_checks(classifier_run, tmp_path, calls):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("x")
    with pytest.raises(UserError, match="not an export"):
        export_run(classifier_run, tmp_path / "taken")
    assert calls == []  # refused before any model or data is built
    out = export_run(classifier_run, tmp_path / "exp")
    assert (out / "model.onnx").exists() and (out / "labels.txt").read_text().split()[0] == "class0"
    assert calls[0] == "model student" and "data" in calls


def test_changed_weights_are_refused_by_eval_and_init_from(ctc_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ctc_run, run)
    weights = run / "final" / "student.pt"
    state = torch.load(weights, weights_only=True)
    first = next(iter(state))
    state[first] = state[first] + 1
    torch.save(state, weights)
    proc = run_cli("eval", str(run), "--models", "student")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "student.pt: SHA-256 does not match student.model.json" in lines[0]
    spec = yaml.safe_load((SPECS / "tiny_ctc.yaml").read_text())
    spec["student"]["init_from"] = {"run": str(run)}
    spec["output_dir"] = str(tmp_path / "runs")
    with pytest.raises(UserError, match="SHA-256 does not match"):
        engine.run_spec(write_spec(tmp_path / "spec.yaml", spec))


def test_init_from_a_described_run_builds_no_source_data(ctc_run, tmp_path, calls):
    spec = yaml.safe_load((SPECS / "tiny_ctc.yaml").read_text())
    spec["student"]["init_from"] = {"run": str(ctc_run)}
    spec["stages"][0]["steps"] = 1
    run_dir = _run(tmp_path, spec)
    assert calls == ["data"]  # this run's own data only
    report = json.loads((run_dir / "init_from.json").read_text())["student"]
    assert report["loaded"] and not report["skipped"]


def _check_rnnt_description(run_dir: Path, model: str, preset: str) -> dict:
    """The RNN-T ``model``'s description (family, preset, front end), and its test evaluation from the description
    alone equal to the run's; returns the description."""
    final = run_dir / "final"
    desc = json.loads((final / f"{model}.model.json").read_text())
    assert desc["family"] == "rnnt_lstm" and desc["args"]["preset"] == preset and desc["task"] == "rnnt"
    assert desc["features"]["kind"] == "nemo" and desc["features"]["dim"] == 80
    run = finished.load_run(run_dir, models=[model])
    assert not run.data.built and run.models[model].training is False
    got = finished.evaluate_run(run_dir, "test", [model])[model]  # the test split alone, units from the description
    done = json.loads((final / "COMPLETE").read_text())["final"][model]
    assert got["wer"] == pytest.approx(done["test/wer"]) and got["loss"] == pytest.approx(done["test/loss"])
    return desc


def test_rnnt_description(tmp_path):
    """The headline (its teacher a tiny shipped one): a character-tokenised student."""
    teacher = ship_tiny_teacher(tmp_path / "teacher")
    tiny = [*headline_overrides(teacher), "data.train_size=24", "data.valid_size=8", "data.test_size=8",
            "data.test_seen_size=4", "data.num_speakers=6", "trainer.threads=1", "trainer.progress_bar=false",
            "stages[0].steps=2", "stages[0].batch_size=8", "stages[0].eval.every=2", "stages[0].eval.max_batches=1",
            "export.enabled=false", "evaluate.extra_splits=[]", "evaluate.sets={}", "baseline.student_alone=false"]
    run_dir = _run(tmp_path, REPO / "specs" / "rnnt_lcmr.yaml", tiny)
    desc = _check_rnnt_description(run_dir, "student", "exp1_student")
    assert desc["tokenizer"]["kind"] == "char" and desc["tokenizer"]["vocab_size"] == len(desc["units"])
    assert desc["tokenizer"]["files"] == {"tokens_file": "student.tokens.txt"}
    assert desc["units"] == json.loads((teacher / "model.json").read_text())["units"]  # the shipped teacher's


def test_rnnt_sentencepiece_description(tmp_path):
    """A SentencePiece student: its piece model is saved beside it and the description names it."""
    # 100 training sentences: SentencePiece cannot make the spec's 64 pieces from 48 sentences of the small grammar
    tiny = ["data.train_size=100", "data.valid_size=8", "data.test_size=8", "data.num_speakers=6",
            "student.size=tiny", "trainer.threads=1", "trainer.progress_bar=false", "stages[0].steps=2",
            "stages[0].eval.every=2", "export.enabled=false"]
    run_dir = _run(tmp_path, REPO / "specs" / "rnnt_student_alone.yaml", tiny)
    desc = _check_rnnt_description(run_dir, "student", "exp1_student")
    assert desc["tokenizer"]["kind"] == "sentencepiece" and desc["tokenizer"]["vocab_size"] == 64
    assert desc["tokenizer"]["files"] == {"tokens_file": "student.tokens.txt", "bpe_model": "student.bpe.model"}
    assert (run_dir / "final" / "student.bpe.model").stat().st_size > 0 and len(desc["units"]) == 64


def test_export_refuses_a_taken_folder_before_loading_torch(classifier_run, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("x")
    code = ("import sys; from compressor.cli import main; "
            f"rc = main(['export', {str(classifier_run)!r}, '--out', {str(tmp_path / 'taken')!r}]); "
            "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded', rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split("\n")[0] == "torch not loaded 2", proc.stdout + proc.stderr
    assert "holds files that are not an export" in proc.stderr
