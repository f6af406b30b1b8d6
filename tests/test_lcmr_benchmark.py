"""benchmarks/seed002_lcmr/lcmr_reproduction.py: the specs it derives (corpus setting, a smaller student, both test sets) and
its report (the gap row first, every claim checked on unseen and on seen voices)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.spec import load_spec
from tests.conftest import load_benchmark, write_spec


def args(*argv: str) -> Any:
    return load_benchmark("lcmr_reproduction").parse_args(["--work", "/tmp/unused", *argv])


def test_large_corpus_smaller_student_and_both_test_sets(tmp_path: Path) -> None:
    bench = load_benchmark("lcmr_reproduction")
    a = args("--corpus", "large", "--student-layers", "1", "1", "--mr-steps", "30", "--ft-steps", "10")
    spec = bench.build_spec("lcmr_s2_log", 0, a, Path("/tmp/t/final/teacher.pt"))
    assert spec["data"]["setting"] == "large"
    assert (spec["student"]["encoder_layers"], spec["student"]["pred_layers"]) == (1, 1)
    assert spec["teacher"]["preset"] == "exp1_teacher" and "encoder_layers" not in spec["teacher"]
    assert spec["evaluate"]["extra_splits"] == ["test_seen"]
    assert [st["steps"] for st in spec["stages"]] == [30, 10]
    spec["teacher"].pop("checkpoint")  # (no teacher trained here) the rest is a valid spec for the engine
    loaded = load_spec(write_spec(tmp_path / "s.yaml", spec), check_machine=False)
    assert loaded.spec.data.setting == "large"
    alone = bench.build_spec("student_alone", 0, a, None)
    assert alone["stages"][0]["steps"] == 40 and "teacher" not in alone
    small = bench.build_spec("student_alone", 0, args(), None)
    assert "setting" not in small["data"] and "encoder_layers" not in small["student"]


def row(wer: float, seen: float, params: int = 1000) -> dict[str, Any]:
    return {"wer": wer, "cer": wer / 2, "wer_seen": seen, "parameters": params, "curve": [], "replacing_rate": []}


def test_report_leads_with_the_gap_and_checks_claims_on_both_sets(tmp_path: Path) -> None:
    bench = load_benchmark("lcmr_reproduction")
    data = {
        "teacher": [row(0.52, 0.40), row(0.52, 0.40)],
        "student_alone": [row(0.51, 0.50), row(0.51, 0.50)],  # no gap on unseen voices, +25% on seen
        "lattice_kd": [row(0.50, 0.45), row(0.50, 0.45)],
        "lcmr_s2_log": [row(0.55, 0.42), row(0.55, 0.42)],
    }
    machine = {"machine": "test", "date": "today", "torch": "x", "wall_minutes": 1.0, "task": {"name": "rnnt"}}
    text = bench.write_table(tmp_path, data, args("--corpus", "large"), machine, "t")
    assert (tmp_path / "t_table.md").read_text() == text
    gap_line = next(line for line in text.splitlines() if line.startswith("**Gap**"))
    assert "-1.9% (test, unseen voices)" in gap_line and "+25.0% (test_seen, seen voices)" in gap_line
    assert text.index("**Gap**") < text.index("| Teacher |")
    lcmr = next(line for line in text.splitlines() if line.startswith("- LCMR beats lattice KD"))
    assert "**does not hold** on test, unseen voices" in lcmr and "**holds** on test_seen, seen voices" in lcmr
    sched = next(line for line in text.splitlines() if line.startswith("- the log scheduler"))
    assert sched.count("not measured") == 2
