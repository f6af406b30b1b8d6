"""specs/rnnt_lcmr.yaml (shrunk by --set): its RNN-T student exported, then decoded by sherpa-onnx alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import soundfile as sf
from support import REPO, load_benchmark, run_cli
from support.tiny_teacher import headline_overrides, ship_tiny_teacher
from support.tones import run_isolated

SHRINK = [
    "data.train_size=24", "data.valid_size=12", "data.test_size=12", "data.test_seen_size=4", "data.num_speakers=6",
    "data.workers=1", "stages.0.steps=12", "stages.0.batch_size=8",
    "stages.0.eval.every=4", "stages.0.eval.max_batches=1",  # keeps the module-replacing stage's hand-over
    "evaluate.sets={}", "export.decode_utterances=12", "export.valid_utterances=12", "export.bench_utterances=3",
    "trainer.threads=1", "trainer.progress_bar=false",
]


@pytest.fixture(scope="module")
def lcmr_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One shrunk run of the headline spec (its teacher a tiny shipped one): its run directory and the environment it
    ran in."""
    tmp_path = tmp_path_factory.mktemp("lcmr_spec")
    teacher = ship_tiny_teacher(tmp_path / "teacher")
    env = {"COMPRESSOR_CACHE": str(tmp_path / "cache")}
    args = ["run", str(REPO / "specs" / "rnnt_lcmr.yaml"), "--set", f"output_dir={tmp_path / 'runs'}"]
    for item in headline_overrides(teacher) + SHRINK:
        args += ["--set", item]
    proc = run_cli(*args, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs" / "rnnt_lcmr").iterdir()
    return run_dir, env


def test_rnnt_lcmr_student_exported_and_decoded_by_sherpa(lcmr_run, tmp_path):
    run_dir, env = lcmr_run
    export = run_dir / "export"
    for name in ("encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt", "encoder.streaming.onnx",
                 "export_report.png"):
        assert (export / name).exists(), name
    summary = (run_dir / "summary.md").read_text()
    assert "## Export (onnx, rnnt)" in summary and "sherpa-onnx vs PyTorch greedy" in summary

    # the exported files decode the run's test audio with sherpa-onnx alone, as the student does in PyTorch
    os.environ["COMPRESSOR_CACHE"] = env["COMPRESSOR_CACHE"]
    try:
        from compressor.families.asr.greedy import torch_greedy
        from compressor.families.asr.metrics import detokenize
        from compressor.run.finished import load_run

        run = load_run(run_dir)
    finally:
        os.environ.pop("COMPRESSOR_CACHE", None)
    split = run.data.dataset("test")
    tokens = run.data.info["tokens"]
    wavs, expected = [], []
    for i in range(3):
        wavs.append(str(split.utts[i].audio))
        feats = run.data.collate([split[i]])["features"][0]
        ids = torch_greedy("rnnt", run.models["student"], feats)
        expected.append(detokenize(ids, tokens, len(tokens) - 1))
    import numpy
    import sherpa_onnx

    proc = run_isolated([str(REPO / "examples" / "transcribe_sherpa.py"),
                         "--model-dir", str(export), *wavs], (sherpa_onnx, numpy, sf), tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = [line.split("\t", 1)[1] if "\t" in line else "" for line in proc.stdout.splitlines()]
    assert got == expected
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    assert "student" in results["final"]


def test_lcmr_diagnosis_reads_what_the_run_trained(lcmr_run, monkeypatch):
    """benchmarks/seed002_lcmr/lcmr_diagnosis.py on the headline run: strategy 2 hands over the teacher's shared
    parts, the replacing modules move, the replacing rate reaches 1 by the stage's fine-tuning phase, and the stage's LR
    is reported."""
    run_dir, env = lcmr_run
    monkeypatch.setenv("COMPRESSOR_CACHE", env["COMPRESSOR_CACHE"])
    text, summary = load_benchmark("lcmr_diagnosis").diagnose(run_dir)
    groups = summary["groups"]
    replacing = {k: v for k, v in groups.items() if k.startswith("replacing modules")}
    shared = {k: v for k, v in groups.items() if k.startswith("shared")}
    assert set(replacing) == {"replacing modules: encoder.layers.0", "replacing modules: encoder.layers.1",
                              "replacing modules: predictor.layers.0"}
    assert all(v["moved_mr"] > 0 for v in replacing.values())
    # strategy 2: after module replacing the student's shared parts are the (frozen) teacher's
    assert shared and all(v["teacher_after_mr"] for v in shared.values())
    # one stage of 12 steps, its last quarter (from step 10) fine-tuning the student alone: p = 1 by then
    assert summary["mr_steps"] == 12 and summary["first_p1"] is not None and summary["first_p1"] <= 10
    assert [row[0] for row in summary["lr"]] == ["lcmr"]  # the teacher is shipped: no stage trains it
    assert "Strategy 2 (teacher frozen)" in text and "last 25% of it fine-tuning the student alone" in text
