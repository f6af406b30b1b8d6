"""specs/rnnt_lcmr.yaml (shrunk by --set): its RNN-T student exported, then decoded by sherpa-onnx alone."""

from __future__ import annotations

import json
import os

import soundfile as sf
from conftest import REPO, run_cli
from test_export_fixtures import run_isolated

SHRINK = [
    # 100 training sentences: SentencePiece cannot make the spec's 64 pieces from 60 sentences of the small grammar
    "data.train_size=100", "data.valid_size=12", "data.test_size=12", "data.workers=1",
    "teacher.size=tiny", "student.size=tiny", "stages.0.steps=30", "stages.1.steps=10", "stages.2.steps=10",
    "export.decode_utterances=12", "export.valid_utterances=12", "export.bench_utterances=3",
    "trainer.progress_bar=false",
]


def test_rnnt_lcmr_student_exported_and_decoded_by_sherpa(tmp_path):
    env = {"COMPRESSOR_CACHE": str(tmp_path / "cache")}
    args = ["run", str(REPO / "specs" / "rnnt_lcmr.yaml"), "--set", f"output_dir={tmp_path / 'runs'}"]
    for item in SHRINK:
        args += ["--set", item]
    proc = run_cli(*args, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs" / "rnnt_lcmr").iterdir()
    export = run_dir / "export"
    for name in ("encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt", "encoder.streaming.onnx",
                 "export_report.png"):
        assert (export / name).exists(), name
    summary = (run_dir / "summary.md").read_text()
    assert "## Export (onnx, rnnt)" in summary and "sherpa-onnx vs PyTorch greedy" in summary

    # the exported files decode the run's test audio with sherpa-onnx alone, as the student does in PyTorch
    os.environ["COMPRESSOR_CACHE"] = env["COMPRESSOR_CACHE"]
    try:
        from compressor.asr.metrics import detokenize
        from compressor.engine import load_run
        from compressor.export.parity import torch_greedy

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
