"""The RNN-T specs run end to end through the engine (tiny sizes: a small corpus, few steps)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from support import REPO, run_cli
from support.tiny_teacher import headline_overrides, ship_tiny_teacher

# the headline shrunk: its teacher a tiny shipped one (support.tiny_teacher), a small corpus, few steps
CORPUS = "{setting: large, train_size: 24, valid_size: 8, test_size: 8, test_seen_size: 4, num_speakers: 6}"
TINY = ["data.train_size=24", "data.valid_size=8", "data.test_size=8", "data.test_seen_size=4",
        "data.num_speakers=6", "trainer.threads=1", "trainer.progress_bar=false", "stages[0].steps=8",
        "stages[0].batch_size=8", "stages[0].eval.every=4", "stages[0].eval.max_batches=1"]
# the held-out set: 2 of the shrunk corpus's test sentences, one voice of each synthesiser (dropped without the
# optional 'heldout' extra)
HAS_HELDOUT = all(importlib.util.find_spec(m) is not None for m in ("py_nanotts", "hibari"))
HELDOUT = ["evaluate.sets.heldout.data.sentences=2", "evaluate.sets.heldout.data.voices=1",
           f"evaluate.sets.heldout.data.base={CORPUS}"] if HAS_HELDOUT else ["evaluate.sets={}"]


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ship_tiny_teacher(tmp_path_factory.mktemp("tiny_teacher"))


def _run_dir(root: Path) -> Path:
    runs = sorted(p.parent.parent for p in root.glob("*/*/final/COMPLETE"))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("export", [True])
def test_headline_lcmr_spec_runs_end_to_end(tmp_path: Path, export: bool, tiny_teacher: Path) -> None:
    out = tmp_path / "runs"
    args = ["run", str(REPO / "specs" / "rnnt_lcmr.yaml"), "--set", f"output_dir={out}"]
    # After a few steps the student emits hundreds of near-tied tokens per second; one flipped tie between sherpa-onnx's
    # front end and ours shifts a whole transcript, so exact transcript equality on 4 utterances is chance here
    # (measured after 15 steps: 3 of 4 equal, the fourth 523 vs 524 tokens). Parity with trained models:
    # test_export_asr.py.
    export_items = ["export.decode_utterances=4", "export.valid_utterances=4", "export.calibration_utterances=4",
                    "export.bench_utterances=2", "export.parity_batch_sizes=[1,2]", "export.min_transcript_match=0.5"]
    for o in headline_overrides(tiny_teacher) + TINY + HELDOUT + export_items:
        args += ["--set", o]
    done = run_cli(*args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    run_dir = _run_dir(out)
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    assert [s["stage"] for s in results["stages"]] == ["lcmr"]  # the teacher is shipped, not trained
    assert results["parameters"]["student"] < results["parameters"]["teacher"]
    assert set(results["parameters"]) == {"teacher", "student", "student_alone"}  # the hybrid is gone
    assert [s["stage"] for s in results["alone"]["stages"]] == ["lcmr_alone"]
    assert results["alone"]["plan"][0]["left_out"] == ["module_replacing"]
    assert 0.0 <= results["final"]["student_alone"]["test/wer"]
    assert 0.0 <= results["final"]["student"]["test/wer"]
    if HAS_HELDOUT:
        held = results["sets"]["final"]
        assert set(held) == {"teacher", "student", "student_alone"}
        assert all(0.0 <= held[m]["heldout"]["wer"] for m in held)
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["replacing_rate"] for r in records if "replacing_rate" in r]
    assert len(rates) == 8 and rates[-1] == 1.0
    assert any(p.name.startswith("encoder") for p in (run_dir / "export").rglob("*.onnx"))


def test_lattice_kd_and_student_alone_specs_validate(tiny_teacher: Path) -> None:
    for name in ("rnnt_lattice_kd", "rnnt_student_alone"):
        done = run_cli("validate", str(REPO / "specs" / f"{name}.yaml"))
        assert done.returncode == 0, done.stderr
    sets = [x for o in headline_overrides(tiny_teacher) for x in ("--set", o)]
    done = run_cli("validate", str(REPO / "specs" / "rnnt_lcmr.yaml"), *sets)  # the headline, its teacher tiny
    assert done.returncode == 0, done.stderr
