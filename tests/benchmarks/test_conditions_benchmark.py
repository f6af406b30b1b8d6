"""benchmarks/checks/conditions.py: a finished run's models on its test audio re-recorded under conditions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_benchmark, write_spec
from support.tones import write_tone_corpus

conditions = load_benchmark("conditions")


@pytest.mark.integration
def test_clean_equals_the_runs_own_wer_and_conditions_change_the_audio(tmp_path: Path, capsys) -> None:
    from compressor.run.engine import run_spec

    corpus = write_tone_corpus(tmp_path / "tones")
    spec = {"name": "tiny_conditions", "seed": 0, "output_dir": str(tmp_path / "runs"), "task": {"name": "rnnt"},
            "data": {"name": "nemo_manifest", "train": str(corpus / "train.jsonl"),
                     "valid": str(corpus / "valid.jsonl"), "test": str(corpus / "test.jsonl"), "tokenizer": "char"},
            "student": {"name": "rnnt_lstm", "size": "tiny"}, "trainer": {"progress_bar": False, "threads": 1},
            "stages": [{"name": "train", "train": ["student"], "steps": 30, "batch_size": 8,
                        "optimizer": {"name": "adamw", "lr": 0.01}}],
            "evaluate": {"split": "test", "models": ["student"]}}
    run_dir = run_spec(write_spec(tmp_path / "spec.yaml", spec))
    own = json.loads((run_dir / "final" / "COMPLETE").read_text())["final"]["student"]["test/wer"]
    out = tmp_path / "out"
    assert conditions.main([str(tmp_path / "runs" / "tiny_conditions"), "--conditions", "silence", "slow",
                            "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    result = json.loads((out / "conditions.json").read_text())["results"][str(run_dir)]["student"]
    assert list(result) == ["clean", "silence", "slow"]
    assert result["clean"] == pytest.approx(own, abs=1e-9)  # the manifest path measures what the run measured
    clean = sorted((tmp_path / "work" / "run0" / "clean").glob("*.wav"))
    for name in ("silence", "slow"):
        heard = sorted((tmp_path / "work" / "run0" / name).glob("*.wav"))
        assert len(heard) == len(clean)
        assert all(a.stat().st_size != b.stat().st_size for a, b in zip(clean, heard, strict=True))
    text = capsys.readouterr().out
    assert "| student | 1 |" in text and "x)" in text


def test_a_path_that_is_no_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no finished run"):
        conditions.finished_runs([tmp_path])
