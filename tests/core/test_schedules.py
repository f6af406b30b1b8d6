"""Schedule formulas at known points (seed 001 Eq. 5, seed 002 Eq. 5)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from compressor.plugins import get_registry


def clock(step: int = 0, epoch: int = 0, total_steps: int = 100, total_epochs: int = 10, spe: int = 10,
          err: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(step=step, epoch=epoch, total_steps=total_steps, total_epochs=total_epochs,
                           steps_per_epoch=spe, batch_error=err)


def build(ref: dict):
    return get_registry().build("schedule", ref)


def test_exp_decay_is_exp_one_minus_t() -> None:
    s = build({"name": "exp_decay"})
    for epoch in range(5):  # t counts epochs from 1: beta_1 = 1
        assert s(clock(epoch=epoch)) == pytest.approx(math.exp(1 - (epoch + 1)))
    per_step = build({"name": "exp_decay", "unit": "step"})
    assert per_step(clock(step=5, spe=10)) == pytest.approx(math.exp(-0.5))


def test_triangular_peaks_at_half() -> None:
    s = build({"name": "triangular"})  # T = 10 epochs, mu = 5: 0.1 * max(0, -|t-5|/2.5 + 1)
    values = [s(clock(epoch=e)) for e in range(10)]
    assert values[4] == pytest.approx(0.1)  # t = 5
    assert values[2] == pytest.approx(0.1 * (1 - 2 / 2.5))  # t = 3
    assert values[0] == pytest.approx(0.0) and values[9] == pytest.approx(0.0)  # t = 1: 1 - 4/2.5 < 0
    assert max(values) == pytest.approx(0.1)


def test_error_rate_follows_the_batch() -> None:
    s = build({"name": "error_rate"})
    assert s(clock(err=0.25)) == 0.25
    assert s(clock(err=None)) == 1.0


def test_log_curriculum_matches_eq5() -> None:
    s = build({"name": "log_curriculum", "base": 40.0, "b": 2.0, "k": 0.5})
    for T in (0, 10, 40, 77):
        assert s(clock(step=T)) == pytest.approx(min(math.log(0.5 * T + 2.0, 40.0), 1.0))
    assert s(clock(step=0)) == pytest.approx(math.log(2) / math.log(40))  # the basic replacing rate log_B(b)
    assert s(clock(step=76)) == 1.0  # k T + b = 40 = B
    derived = build({"name": "log_curriculum", "base": 40.0, "b": 2.0, "reach_at": 0.5})
    assert derived(clock(step=49, total_steps=100)) < 1.0 and derived(clock(step=50, total_steps=100)) == 1.0
    full = build({"name": "log_curriculum", "base": 40.0, "b": 2.0, "reach_at": 1.0})
    assert full(clock(step=98, total_steps=100)) < 1.0 and full.final_value(100, 1) == pytest.approx(1.0)


def test_linear_constant_exponential() -> None:
    lin = build({"name": "linear", "start": 0.5, "end": 1.0})  # over steps 0..99 of a 100-step stage
    assert lin(clock(step=0)) == 0.5 and lin(clock(step=99)) == pytest.approx(1.0)
    assert lin(clock(step=33)) == pytest.approx(0.5 + 0.5 * 33 / 99) and lin.final_value(100, 1) == 1.0
    by_epoch = build({"name": "linear", "start": 0.0, "end": 1.0, "unit": "epoch"})
    assert by_epoch(clock(epoch=0)) == 0.0 and by_epoch(clock(epoch=9)) == pytest.approx(1.0)
    assert build({"name": "constant", "value": 0.75})(clock(step=33)) == 0.75
    exp = build({"name": "exponential", "p0": 0.1, "reach_at": 1.0})
    assert exp(clock(step=0)) == pytest.approx(0.1) and exp(clock(step=99)) == pytest.approx(1.0)
    assert exp(clock(step=50)) == pytest.approx(0.1 * math.exp(math.log(10) * 50 / 99))
    assert exp.final_value(100, 1) == pytest.approx(1.0)


def test_bad_schedule_args_are_refused() -> None:
    from compressor.core.errors import SpecError

    with pytest.raises(SpecError, match="must be below base"):
        build({"name": "log_curriculum", "base": 5.0, "b": 6.0})
    with pytest.raises(SpecError, match="unknown schedule"):
        build({"name": "cosine_wiggle"})
