"""benchmarks/seed002_lcmr/lcmr_reproduction.py: every row's spec derived from the headline (specs/rnnt_lcmr.yaml,
the shipped teacher), and its report (the gap row first, every claim judged on unseen and on seen voices)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from support import load_benchmark, write_spec

from compressor.spec import load_spec

HEADLINE = Path(__file__).resolve().parents[2] / "specs" / "rnnt_lcmr.yaml"


def args(*argv: str) -> Any:
    return load_benchmark("lcmr_reproduction").parse_args(["--work", "/tmp/unused", *argv])


def headline_stage() -> dict[str, Any]:
    (stage,) = yaml.safe_load(HEADLINE.read_text(encoding="utf-8"))["stages"]
    return stage


def validates(spec: dict[str, Any], tmp_path: Path, teacher: dict[str, Any]) -> None:
    """The spec is one the engine takes (the shipped teacher, not there yet, swapped for its architecture)."""
    spec = copy.deepcopy(spec)
    if spec["teacher"].get("name") == "pretrained":
        spec["teacher"] = teacher
    load_spec(write_spec(tmp_path / f"{spec['name']}.yaml", spec), check_machine=False)


def test_every_row_is_derived_from_the_headline(tmp_path: Path) -> None:
    bench = load_benchmark("lcmr_reproduction")
    base = yaml.safe_load(HEADLINE.read_text(encoding="utf-8"))
    stage = headline_stage()
    a = args()
    specs = {row: bench.build_spec(row, 1, a) for row in bench.ROWS}
    scratch = specs["lcmr_s1_log"]["teacher"]
    assert scratch["name"] == "rnnt_lstm" and scratch.get("preset") == "exp2_teacher"  # the shipped one's shape
    for row, spec in specs.items():
        assert spec["seed"] == 1 and spec["data"] == base["data"] and spec["student"] == base["student"]
        assert spec["evaluate"]["split"] == "test" and spec["evaluate"]["extra_splits"] == ["test_seen"]
        (st,) = spec["stages"]
        for key in ("steps", "batch_size", "grad_clip", "optimizer", "lr_schedule", "eval"):
            assert st[key] == stage[key], (row, key)
        names = [p["name"] for p in st["plugins"]]
        assert names[1:] == ["vtlp", "spec_augment"], row  # the augmentations of the headline stay in every row
        validates(spec, tmp_path, scratch)
    # the headline's run gives three rows: the frozen shipped teacher, the student alone and "Student + LCMR"
    assert specs["teacher"] == specs["student_alone"] == specs["lcmr_s2_log"]
    log = specs["lcmr_s2_log"]
    assert log["teacher"] == {"name": "pretrained", "id": "rnnt_read_speech_en"}
    assert log["stages"] == [stage] and log["evaluate"]["models"] == ["teacher", "student"]
    assert log["baseline"]["student_alone"] is True and "export" not in log
    kd = specs["lattice_kd"]["stages"][0]
    assert kd["plugins"][0] == {"name": "lattice_kd", "teacher": "teacher", "alpha": 1e-3}
    assert kd["frozen"] == ["teacher"] and "baseline" not in specs["lattice_kd"]
    s1 = specs["lcmr_s1_log"]["stages"][0]
    assert s1["train"] == ["teacher", "student"] and "frozen" not in s1 and s1["plugins"] == stage["plugins"]
    for sched in ("constant", "linear", "exponential"):
        st = specs[f"lcmr_s2_{sched}"]["stages"][0]
        mr = st["plugins"][0]
        assert st["frozen"] == ["teacher"] and mr["finetune"] == 0.25
        assert mr["replacing_rate"]["name"] == sched
    # the schedulers that reach p = 1 reach it where the headline's log curriculum does
    assert specs["lcmr_s2_exponential"]["stages"][0]["plugins"][0]["replacing_rate"]["reach_at"] == 0.75
    linear = specs["lcmr_s2_linear"]["stages"][0]["plugins"][0]["replacing_rate"]
    assert linear["duration"] == round(0.75 * stage["steps"])
    other = bench.build_spec("lattice_kd", 0, args("--teacher", "/tmp/my_teacher", "--kd-alpha", "0.01"))
    assert other["teacher"] == {"name": "pretrained", "path": "/tmp/my_teacher"}
    assert other["stages"][0]["plugins"][0]["alpha"] == 0.01


def test_tiny_derives_a_tiny_corpus_and_teacher(tmp_path: Path) -> None:
    bench = load_benchmark("lcmr_reproduction")
    a = args("--tiny")
    assert a.seeds == [0, 1] and a.prefix == "lcmr_tiny"
    teacher = bench.tiny_teacher_spec(a)
    assert teacher["student"]["size"] == "tiny" and teacher["student"]["preset"] == "exp2_teacher"
    spec = bench.build_spec("lcmr_s1_log", 0, a)
    assert spec["data"]["train_size"] == 48 and "setting" not in spec["data"]
    assert spec["stages"][0]["steps"] == 12 and spec["teacher"]["size"] == "tiny"
    validates(spec, tmp_path, spec["teacher"])
    load_spec(write_spec(tmp_path / "teacher.yaml", teacher), check_machine=False)


def test_plan_names_the_runs_each_row_comes_from(capsys: Any) -> None:
    bench = load_benchmark("lcmr_reproduction")
    assert bench.main(["--plan", "--work", "/tmp/unused"]) == 0
    out = capsys.readouterr().out
    assert "6 runs x 3 seeds = 18 runs" in out and f"{headline_stage()['steps']} steps at batch 24" in out
    assert "-> rows teacher, student_alone, lcmr_s2_log" in out


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
    text = bench.write_table(tmp_path, data, args(), machine, "t")
    assert (tmp_path / "t_table.md").read_text() == text
    assert "every row derived from `specs/rnnt_lcmr.yaml`: shipped teacher `rnnt_read_speech_en`" in text
    gap_line = next(line for line in text.splitlines() if line.startswith("**Gap**"))
    assert "-1.9% (test, unseen voices)" in gap_line and "+25.0% (test_seen, seen voices)" in gap_line
    assert text.index("**Gap**") < text.index("| Teacher |")
    lcmr = [line for line in text.splitlines() if line.startswith("| Table 2 | LCMR beats lattice KD")]
    # two seeds, each 5 points worse on unseen voices and 3 points better on seen ones (no spread: a zero-width
    # interval on either side of zero)
    assert "**does not hold** | -5.00 pts" in lcmr[0] and "**holds** | +3.00 pts" in lcmr[1]
    sched = [line for line in text.splitlines() if line.startswith("| Table 5 | the log scheduler")]
    assert len(sched) == 2 and all("**not measured**" in line for line in sched)


def test_results_page_renders_every_result_set_from_json() -> None:
    bench = load_benchmark("lcmr_reproduction")
    page = bench.results_page(bench.HERE / "results")
    assert page.count("\nMeasured 20") == 4 and "commit `2fb5592" in page and "From the shipped teacher" in page
    assert "before the held-out-voice split" in page and "(n = 1, no interval)" in page
    assert 'was "does not hold" (earlier rule: the means alone)' in page
    assert "with a teacher trained inside each seed's runs, before the teacher shipped" in page.splitlines()[2]
    assert "## How to run" in page and "lcmr_reproduction.py --plan" in page


def test_a_finished_headline_run_is_reused_for_its_seed(tmp_path: Path) -> None:
    bench = load_benchmark("lcmr_reproduction")
    a = args()
    # the headline as `compressor run` writes it (resolved_spec.yaml is the spec as run), with its own machine
    # settings and export: the lcmr_s2_log row of seed 0 all the same
    run_dir = tmp_path / "20261207-000000"
    (run_dir / "final").mkdir(parents=True)
    (run_dir / "final" / "COMPLETE").write_text("{}")
    (run_dir / "resolved_spec.yaml").write_text(HEADLINE.read_text(encoding="utf-8"))
    assert bench.headline_run(0, a, tmp_path) == run_dir
    assert bench.headline_run(1, a, tmp_path) is None  # another seed
    assert bench.headline_run(0, args("--rerun"), tmp_path) is None
    edited = yaml.safe_load(HEADLINE.read_text(encoding="utf-8"))
    edited["stages"][0]["steps"] = 100
    (run_dir / "resolved_spec.yaml").write_text(yaml.safe_dump(edited))
    assert bench.headline_run(0, a, tmp_path) is None  # not the same settings
    # a headline run's directory does not name its seed: rows pair by the seed recorded when collected
    alone = [dict(row(0.5, 0.4), seed=2, run_dir=str(run_dir))]
    assert bench.per_seed(alone, "wer") == {2: 0.5}
