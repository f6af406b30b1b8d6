"""benchmarks/seed_pseudo_labels/pseudo_labels.py: its plan names every row and seed with an expected time, every
spec it would run validates (tiny sizes), the labelled 10% keep their references, and its claims pair the rows by
seed on both test sets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from support import load_benchmark

HAVE_WHISPER = importlib.util.find_spec("faster_whisper") is not None


def test_plan_prints_every_row_and_the_expected_time(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_benchmark("pseudo_labels")
    args = bench.parse_args(["--plan"])
    total = bench.plan(args)
    out = capsys.readouterr().out
    assert all(row in out for row in bench.ROWS) and "(labelling)" in out and "seeds [0, 1, 2]" in out
    # Whisper labels the 1800 audio-only utterances once; six rows x three seeds train
    assert total > 1800 * bench.WHISPER_SECONDS_PER_UTTERANCE
    small = bench.plan(bench.parse_args(["--rows", "labelled", "full", "--seeds", "0"]))
    assert small < total and "(labelling)" not in capsys.readouterr().out
    assert bench.main(["--plan"]) == 0


def test_every_spec_validates_and_the_labelled_share_keeps_its_references(tmp_path: Path) -> None:
    from support import write_spec

    from compressor.spec import load_spec

    bench = load_benchmark("pseudo_labels")
    rows = [r for r in bench.ROWS if HAVE_WHISPER or not r.startswith("whisper")]
    args = bench.parse_args(["--size", "tiny", "--train-size", "40", "--eval-size", "8", "--steps", "4",
                             "--teacher-steps", "4", "--seeds", "0", "1", "--rows", *rows, "--work", str(tmp_path)])
    runs = bench.runs(args)
    assert len(runs) == 2 * len(rows) and len({sp["name"] for _, _, sp in runs}) == len(runs)
    for row, seed, sp in runs:
        loaded = load_spec(write_spec(tmp_path / f"{sp['name']}.yaml", sp))
        assert loaded.spec.seed == seed
        data = sp["data"]
        assert data.get("hide_labels") == (None if row == "full" else pytest.approx(0.9))
        plugins = [p for st in sp["stages"] for p in st.get("plugins", [])]
        if row in ("labelled", "full"):
            assert not plugins
        else:
            (kd,) = plugins
            assert kd["pseudo_fraction"] == 0.0 and ("min_confidence" in kd) == row.endswith("_conf")
    with pytest.raises(ValueError, match="unknown row"):
        bench.spec(args, "nope", 0)


def test_claims_pair_rows_by_seed_on_both_test_sets() -> None:
    bench = load_benchmark("pseudo_labels")
    args = bench.parse_args([])

    def row(wers: dict[int, float], pseudo_wer: float | None = None) -> dict[int, dict]:
        out = {}
        for s, w in wers.items():
            out[s] = {"test": w, "test_seen": w - 0.05}
            if pseudo_wer is not None:
                out[s]["pseudo"] = {"pseudo_labelled": 1500, "pseudo_label_wer": pseudo_wer,
                                    "teacher_seconds_per_utterance": 2.5, "transcribed": 1800}
        return out

    res = {"labelled": row({0: 0.40, 1: 0.42, 2: 0.41}), "whisper": row({0: 0.30, 1: 0.31, 2: 0.29}, 0.1),
           "project": row({0: 0.41, 1: 0.40, 2: 0.43}, 0.3), "full": row({0: 0.20, 1: 0.21, 2: 0.20})}
    lines, claims = bench.report(res, args)
    verdicts = {c.text: c.verdict for c in claims}
    assert verdicts["+ Whisper base pseudo-labels beats 10% alone on test"] == "holds"
    assert verdicts["+ project teacher pseudo-labels beats 10% alone on test_seen"] == "inside the interval"
    assert verdicts["100% transcripts (ceiling) beats 10% alone on test"] == "holds"
    text = "\n".join(lines)
    assert "| + Whisper base pseudo-labels | 30.00% ± 1.00% (n = 3) | 25.00% ± 1.00% (n = 3) | 1500 ± 0 (n = 3)" in text
    # per seed (10% alone - Whisper) / (10% alone - ceiling): 0.10/0.20, 0.11/0.21, 0.12/0.21; then mean ± std
    assert "test: Whisper pseudo-labels close 53.2% ± 3.6% (n = 3) of the gap" in text
    assert "relative WER change against 10% alone 26.8% ± 2.2% (n = 3)" in text
