"""benchmarks/stats.py: the one statistics of every RESULTS page, against hand computations."""

from __future__ import annotations

import math

import pytest
from support import load_benchmark

stats = load_benchmark("stats")


def test_t_interval_by_hand() -> None:
    # d = 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    iv = stats.interval([1.0, 2.0, 3.0])
    assert iv.mean == pytest.approx(2.0)
    assert (iv.low, iv.high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-5)
    assert iv.verdict == stats.INSIDE
    assert stats.interval([8.0, 9.0, 10.0]).verdict == stats.HOLDS
    assert stats.interval([-8.0, -9.0, -10.0]).verdict == stats.FAILS
    assert iv.text() == "+2.0 [-0.5, +4.5] (n = 3)"


def test_single_runs_say_n1_and_show_no_spread() -> None:
    one = stats.interval([5.0])
    assert one.verdict == stats.INSIDE and math.isinf(one.low)
    assert one.text() == "+5.0 (n = 1, no interval)"
    assert stats.fmt([0.157], scale=100) == "15.7 (n = 1)"
    assert "±" not in stats.fmt([3.0])
    assert stats.fmt([1.0, 3.0]) == "2.0 ± 1.4 (n = 2)"
    assert stats.interval([]).verdict == "not measured"


def test_paired_beats_the_unpaired_spread_and_pairs_only_shared_seeds() -> None:
    # two rows with a spread of ~8 across seeds, but one is lower by 8-10 on every seed (an error rate)
    alone = {0: 50.0, 1: 40.0, 2: 60.0}
    kd = {0: 41.0, 1: 31.0, 2: 50.0, 3: 1.0}  # seed 3 has no partner: left out
    d = stats.paired(kd, alone, higher_is_better=False)
    assert d.n == 3 and d.seeds == (0, 1, 2)
    assert d.mean == pytest.approx((9 + 9 + 10) / 3)
    assert d.verdict == stats.HOLDS
    # the same claim on means and std alone would overlap: the unpaired spreads are ~10
    assert stats.spread(list(alone.values())).std == pytest.approx(10.0)
    # lists are read in seed order
    assert stats.paired([2.0, 3.0], [1.0, 1.0, 1.0]).n == 2


def test_claims_table_has_one_layout() -> None:
    c = stats.Claim("Table 1", "KD lowers the error", stats.paired([1.0, 2.0], [3.0, 5.0], higher_is_better=False),
                    sides="1.5 vs 4.0")
    lines = stats.claims_table([c])
    assert lines[0] == stats.RULE
    assert lines[-1].startswith("| Table 1 | KD lowers the error | **inside the interval** | +2.5 [")
    assert c.as_dict()["verdict"] == stats.INSIDE
