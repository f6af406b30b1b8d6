"""Logit KD: each distance against its formula, the KD weight and alpha_t = 1 - beta_t, hybrid targets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from compressor_plugins.logit_kd import LogitKD, logit_distance
from torch import nn

from compressor.losses import LossTerms
from compressor.plugins import get_registry


def test_distances_match_their_formulas() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    T = 3.0
    p_t = torch.softmax(t / T, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    assert logit_distance(s, t, "kl", T) == pytest.approx(float(kl), rel=1e-5)
    assert logit_distance(s, t, "mse") == pytest.approx(float(((s - t) ** 2).mean()), rel=1e-6)
    assert logit_distance(s, t, "l1") == pytest.approx(float((s - t).abs().mean()), rel=1e-6)
    assert logit_distance(s, t, "smooth_l1") == pytest.approx(float(F.smooth_l1_loss(s, t)), rel=1e-6)
    for loss in ("kl", "mse", "l1", "smooth_l1"):
        assert float(logit_distance(t, t, loss)) == pytest.approx(0.0, abs=1e-6)
    # sequence logits (B, T, C) average over every position
    seq_s, seq_t = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    assert logit_distance(seq_s, seq_t, "l1") == pytest.approx(float((seq_s - seq_t).abs().mean()), rel=1e-6)


class Fixed(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, batch: dict) -> dict:
        return {"logits": self.logits}


def _ctx(models: dict, epoch: int = 0, err: float | None = None) -> SimpleNamespace:
    task = SimpleNamespace(forward=lambda m, b: m(b))
    ctx = SimpleNamespace(models=models, task=task, step=0, epoch=epoch, total_steps=10, total_epochs=5,
                          steps_per_epoch=2, batch_error=err, scalars={})
    ctx.model = lambda name: models[name]
    ctx.log_scalar = lambda k, v: ctx.scalars.__setitem__(k, v)
    return ctx


def _strategy(**args) -> LogitKD:
    entry = get_registry().get("strategy", "logit_kd")
    return LogitKD(entry.args.model_validate(args))


def test_weight_schedule_and_complement_alpha() -> None:
    student = torch.randn(3, 4, requires_grad=True)
    teacher = Fixed(torch.randn(3, 4))
    kd = _strategy(loss="l1", weight={"name": "exp_decay"}, alpha="complement")
    losses = LossTerms()
    losses.add("task", torch.tensor(2.0))
    ctx = _ctx({"teacher": teacher}, epoch=1)  # t = 2: beta = exp(-1)
    kd.compressor_loss_terms(ctx, {}, {"logits": student}, losses)
    beta = torch.exp(torch.tensor(-1.0)).item()
    assert losses.weights["logit_kd"] == pytest.approx(beta)
    assert losses.weights["task"] == pytest.approx(1 - beta)
    expected = (1 - beta) * 2.0 + beta * float((student - teacher.logits).abs().mean().detach())
    assert float(losses.total().detach()) == pytest.approx(expected, rel=1e-5)
    assert ctx.scalars["kd_weight"] == pytest.approx(beta)
    losses.total().backward()
    assert student.grad is not None and teacher.logits.grad is None  # the target is detached


def test_hybrid_professor_mixes_targets_by_batch_error() -> None:
    t, p = torch.zeros(2, 3), torch.ones(2, 3)
    kd = _strategy(loss="l1", professor="professor", weight={"name": "constant", "value": 1.0})
    losses = LossTerms()
    losses.add("task", torch.tensor(0.0))
    student = torch.zeros(2, 3)
    ctx = _ctx({"teacher": Fixed(t), "professor": Fixed(p)}, err=0.25)
    kd.compressor_loss_terms(ctx, {}, {"logits": student}, losses)
    assert float(losses.values["logit_kd"]) == pytest.approx(0.25)  # target = 0.75 * 0 + 0.25 * 1
    assert ctx.scalars["kd_gamma"] == 0.25


def test_shape_mismatch_is_reported() -> None:
    kd = _strategy()
    losses = LossTerms()
    losses.add("task", torch.tensor(0.0))
    with pytest.raises(ValueError, match="differ in shape"):
        kd.compressor_loss_terms(_ctx({"teacher": Fixed(torch.zeros(2, 5))}), {}, {"logits": torch.zeros(2, 4)},
                                 losses)
