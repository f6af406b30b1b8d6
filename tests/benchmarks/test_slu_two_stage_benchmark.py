"""benchmarks/seed000_two_stage/slu_two_stage.py: the fine-tuning specs Table 2's rows derive (which encoder,
which plugins, which teacher), the scenarios (10% subsets, far field), ``--only``, per-seed pre-training and
the claims it checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import load_benchmark, write_spec

from compressor.spec import load_spec

PREP = {k: Path(f"/tmp/prep/{k}") for k in ("mlm", "mlm_more", "ptkd", "ampt")}


def args(*argv: str) -> Any:
    return load_benchmark("slu_two_stage").parse_args(["--work", "/tmp/unused", *argv])


def test_rows_add_one_step_each(tmp_path: Path) -> None:
    bench = load_benchmark("slu_two_stage")
    a = args()
    specs = {row: bench.finetune_spec(a, PREP, row, "full", 0) for row in bench.ROWS}
    plugins = {row: [p["name"] for p in s["stages"][0]["plugins"]] for row, s in specs.items()}
    assert plugins == {
        "baseline": ["layer_freezing"],
        "+PT-KD": ["layer_freezing"],
        "+FT-KD": ["layer_freezing", "logit_kd"],
        "+AM-PT": ["layer_freezing", "logit_kd"],
        "+DA": ["layer_freezing", "logit_kd", "token_span_masking", "hidden_masking"],
    }
    source = {row: Path(s["student"]["init_from"]["run"]).name for row, s in specs.items()}
    assert source == {"baseline": "mlm_more", "+PT-KD": "ptkd", "+FT-KD": "ptkd", "+AM-PT": "ampt", "+DA": "ampt"}
    # without AM-PT only the encoder is reused (a fresh AM); with it, everything but the intent classifier
    assert specs["+PT-KD"]["student"]["init_from"]["include"] == ["encoder"]
    assert specs["+AM-PT"]["student"]["init_from"]["exclude"] == ["classifier"]
    assert "teacher" not in specs["baseline"] and "teacher" not in specs["+PT-KD"]
    assert specs["+FT-KD"]["teacher"]["checkpoint"] == "/tmp/prep/mlm/final/teacher.pt"
    for row, spec in specs.items():  # each is a spec the engine accepts
        if "teacher" in spec:
            spec["teacher"].pop("checkpoint")
        spec["student"].pop("init_from")
        load_spec(write_spec(tmp_path / f"{bench.ROWS.index(row)}.yaml", spec), check_machine=False)


def test_scenarios_subsets_and_far() -> None:
    bench = load_benchmark("slu_two_stage")
    a = args("--far")
    ten = bench.finetune_spec(a, PREP, "+DA", "10%", 2)
    assert ten["data"]["subset"] == {"fraction": 0.1, "count": 10, "index": 2, "seed": 0}
    assert ten["seed"] == 2 and ten["stages"][0]["epochs"] == a.epochs_10
    far = bench.finetune_spec(a, PREP, "+DA", "far", 1)
    assert far["data"]["recording"] == "far" and "subset" not in far["data"]
    assert far["stages"][0]["epochs"] == a.epochs
    # the teacher's cached logits are kept apart per scenario (the far corpus is different audio)
    caches = {bench.finetune_spec(a, PREP, "+FT-KD", sc, 0)["stages"][0]["plugins"][1]["cache_dir"]
              for sc in ("full", "10%", "far")}
    assert len(caches) == 3
    # settings that change a run change its name; the thread count is one of them
    names = {bench._hashed(bench.finetune_spec(args(*x), PREP, "+DA", "full", 0))["name"]
             for x in ((), ("--epochs", "5"), ("--threads", "2"))}
    assert len(names) == 3


def test_only_names_scenarios_of_this_invocation(capsys: pytest.CaptureFixture[str]) -> None:
    assert args("--far", "--only", "far").only == ["far"]
    with pytest.raises(SystemExit) as e:
        args("--only", "far")  # far is not run without --far
    assert e.value.code == 2
    assert "--only: far is not among" in capsys.readouterr().err


def test_claims_are_paired_by_seed() -> None:
    bench = load_benchmark("slu_two_stage")
    table = {
        "full": dict(zip(bench.ROWS, [[30.0, 32.0, 40.0], [34.0, 36.0, 44.5], [36.0], [35.0], [37.0]])),
        "10%": dict(zip(bench.ROWS, [[5.0], [8.0], [9.0], [12.0], [20.0]])),
        "far": dict(zip(bench.ROWS, [[10.0], [11.0], [12.0], [13.0], [19.0]])),
    }
    got = {c.text: c for c in bench.claims(table)}
    # +PT-KD beats baseline by 4.0, 4.0, 4.5 on the three seeds: mean 4.1667, sd 0.2887, t(0.975, 2) = 4.3027
    pt = got["+PT-KD adds accuracy over baseline (full)"]
    assert pt.verdict == "holds" and pt.diff.n == 3
    assert pt.diff.low == pytest.approx(4.1667 - 4.3027 * 0.2887 / 3 ** 0.5, abs=1e-3)
    # unpaired, the two rows' spreads (5.3 and 5.6) would swallow the 4.2-point gain
    assert "± 5.3" in pt.sides and "± 5.6" in pt.sides
    # single runs: n = 1, no interval, inside it
    one = got["+AM-PT adds accuracy over +FT-KD (full)"]
    assert one.verdict == "inside the interval" and "n = 1" in one.diff.text()
    assert got["the gap between full and 10% shrinks (baseline → +DA; points)"].diff.mean == pytest.approx(8.0)
    # DA helps most when noisy: far gain 6 minus clean gain 2
    assert got["DA helps most on the noisy set (far gain − max(clean gain, 0))"].diff.mean == pytest.approx(4.0)
    table["far"]["+DA"] = [12.0]  # hurts the noisy set less than the clean one (-1 vs -3): no gain to count
    table["full"]["+DA"] = [32.0]
    got = {c.text: c for c in bench.claims(table)}
    assert got["DA helps most on the noisy set (far gain − max(clean gain, 0))"].diff.mean == pytest.approx(-1.0)
    table["10%"]["+AM-PT"] = []
    got = {c.text: c for c in bench.claims(table)}
    assert got["+DA adds accuracy over +AM-PT (10%)"].verdict == "not measured"


def test_results_page_renders_from_the_result_json() -> None:
    bench = load_benchmark("slu_two_stage")
    data = json.loads((bench.HERE / "results" / "slu_two_stage_results.json").read_text(encoding="utf-8"))
    page = bench.results_page(data)
    assert "Measured 2026-12-01 on commit `29ff1f4`" in page and "1/31 of the paper's" in page
    assert page.count("| Table 2 |") >= 8 and "(n = 2)" in page
    assert 'was "holds' in page  # the earlier rule's verdict, where it changed


def test_each_seed_pretrains_its_own() -> None:
    bench = load_benchmark("slu_two_stage")
    assert bench.pretraining_plan(args()) == {0: 0, 1: 1, 2: 2}
    assert bench.pretraining_plan(args("--shared-pretraining")) == {0: 0, 1: 0, 2: 0}
    first = {s: bench.prep_specs(args(), {}, s)["mlm"] for s in (0, 1)}
    assert first[0]["seed"] == 0 and first[1]["seed"] == 1
    assert bench._hashed(first[0])["name"] != bench._hashed(first[1])["name"]  # two runs, not one reused
    later = bench.prep_specs(args(), {k: Path(f"/tmp/prep1/{k}/run") for k in PREP}, 1)
    assert {k: s["seed"] for k, s in later.items()} == {"mlm": 1, "mlm_more": 1, "ptkd": 1, "ampt": 1}
    assert later["ptkd"]["student"]["checkpoint"] == "/tmp/prep1/mlm/run/final/student.pt"
    # fine-tuning on seed 1 starts from seed 1's pre-training; its teacher's logits are cached apart
    seed1 = {k: Path(f"/tmp/prep1/{k}/run") for k in PREP}
    ft = bench.finetune_spec(args(), seed1, "+DA", "full", 1)
    assert ft["student"]["init_from"]["run"] == "/tmp/prep1/ampt/run"
    assert ft["teacher"]["checkpoint"] == "/tmp/prep1/mlm/run/final/teacher.pt"
    assert ft["stages"][0]["plugins"][1]["cache_dir"].endswith("full/mlm")
