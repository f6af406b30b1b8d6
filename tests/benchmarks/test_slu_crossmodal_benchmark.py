"""benchmarks/seed001_crossmodal/slu_crossmodal.py: claims judged on paired differences by seed, and its RESULTS page
rendered from the result JSON alone."""

from __future__ import annotations

import json

import pytest
from support import load_benchmark


def _runs(*errors: float | None) -> list[dict]:
    return [{"test_error": e, "converged": e is not None} for e in errors]


def test_kd_gain_is_paired_by_seed() -> None:
    bench = load_benchmark("slu_crossmodal")
    # seeds differ by ~10 points, KD is 2 points better on every one of them
    data = {"whole": {"baseline": _runs(40.0, 50.0, 60.0), bench.KD: _runs(38.0, 48.0, 58.5)}}
    got = {c.text: c for c in bench.claims(data)}
    kd = got["KD (teacher, MAE, Exp.) lowers the error (whole)"]
    assert kd.verdict == "holds" and kd.diff.mean == pytest.approx(11 / 6)
    assert "± 10.00" in kd.sides  # the unpaired spread, beside the paired interval
    # a collapsed run drops its seed from the pairs
    data["whole"][bench.KD] = _runs(38.0, None, 58.5)
    kd = {c.text: c for c in bench.claims(data)}["KD (teacher, MAE, Exp.) lowers the error (whole)"]
    assert kd.diff.n == 2 and kd.diff.seeds == (0, 2)
    assert bench.cell(data["whole"][bench.KD]) == "48.25 ± 14.50 (n = 2) ×1"


def test_results_page_from_the_result_json() -> None:
    bench = load_benchmark("slu_crossmodal")
    payload = json.loads((bench.HERE / "results" / "slu_crossmodal_results.json").read_text(encoding="utf-8"))
    page = bench.results_page(payload)
    assert "Measured 2026-11-30 21:52 UTC on commit `733d041`" in page
    assert "| Table 2 | KD lowers the error (10%; the best KD setting) | **holds** | +8.67 pts" in page
    assert 'was "holds" (earlier rule: the means alone)' in page
