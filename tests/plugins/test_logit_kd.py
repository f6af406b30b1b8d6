"""Logit KD: each distance against its formula, the KD weight and alpha_t = 1 - beta_t at known epochs for every
schedule of seed 001, the hybrid of Eq. 4 (and target mixing), and refusals at validation."""

from __future__ import annotations

import math
from types import MethodType, SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compressor.core.context import StageContext
from compressor.core.losses import LossTerms
from compressor.plugins import get_registry
from plugins.logit_kd import LogitKD, logit_distance


def test_distances_match_their_formulas() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    T = 3.0
    p_t = torch.softmax(t / T, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    assert logit_distance(s, t, "kl", T) == pytest.approx(float(kl), rel=1e-5)
    assert logit_distance(s, t, "mse") == pytest.approx(float(((s - t) ** 2).mean()), rel=1e-6)
    assert logit_distance(s, t, "l1") == pytest.approx(float((s - t).abs().sum(-1).mean()), rel=1e-6)
    assert logit_distance(s, t, "l1", reduction="mean") == pytest.approx(float((s - t).abs().mean()), rel=1e-6)
    assert logit_distance(s, t, "mse", reduction="sum") == pytest.approx(float(((s - t) ** 2).sum(-1).mean()),
                                                                        rel=1e-6)
    assert logit_distance(s, t, "smooth_l1") == pytest.approx(float(F.smooth_l1_loss(s, t)), rel=1e-6)
    for loss in ("kl", "mse", "l1", "smooth_l1"):
        assert float(logit_distance(t, t, loss)) == pytest.approx(0.0, abs=1e-6)
    # sequence logits (B, T, C) average over every position
    seq_s, seq_t = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    assert logit_distance(seq_s, seq_t, "l1") == pytest.approx(float((seq_s - seq_t).abs().sum(-1).mean()),
                                                               rel=1e-6)


def test_l1_is_seed000_ft_kd_norm_by_hand() -> None:
    """Seed 000's FT-KD, ||o^s - o^t||_1, worked by hand for two utterances of three classes."""
    o_s = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 3.0]])
    o_t = torch.tensor([[0.0, 1.0, 1.0], [1.0, -1.0, 3.0]])
    # |1-0| + |-2-1| + |0.5-1| = 4.5 and |0-1| + |0+1| + |3-3| = 2: the batch mean of the norms is 3.25
    assert float(logit_distance(o_s, o_t, "l1")) == pytest.approx(3.25)
    # reduction: mean divides by the number of classes (the loss the code took before)
    assert float(logit_distance(o_s, o_t, "l1", reduction="mean")) == pytest.approx(3.25 / 3)
    kd = _strategy(loss="l1", reduction="mean")
    assert kd.args.reduction == "mean"


class Fixed(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, batch: dict) -> dict:
        return {"logits": self.logits}


def _ctx(models: dict, epoch: int = 0, err: float | None = None) -> SimpleNamespace:
    task = SimpleNamespace(forward=lambda m, b: m(b))
    ctx = SimpleNamespace(models=models, task=task, step=0, epoch=epoch, total_steps=10, total_epochs=5,
                          steps_per_epoch=2, batch_error=err, scalars={}, device=torch.device("cpu"))
    ctx.model = lambda name: models[name]
    ctx.log_scalar = lambda k, v: ctx.scalars.__setitem__(k, v)
    ctx._forwards, ctx._watched = {}, {}
    ctx.forward_once = MethodType(StageContext.forward_once, ctx)  # the engine's shared teacher forward
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
    expected = (1 - beta) * 2.0 + beta * float((student - teacher.logits).abs().sum(-1).mean().detach())
    assert float(losses.total().detach()) == pytest.approx(expected, rel=1e-5)
    assert ctx.scalars["kd_weight"] == pytest.approx(beta)
    losses.total().backward()
    assert student.grad is not None and teacher.logits.grad is None  # the target is detached


@pytest.mark.parametrize("loss", ["mse", "smooth_l1", "l1", "kl"])
def test_hybrid_is_eq4_a_mix_of_two_distances(loss: str) -> None:
    torch.manual_seed(0)
    s, t, p = torch.randn(4, 3), torch.randn(4, 3) * 3, torch.randn(4, 3) * 3
    gamma = 0.25
    ctx = _ctx({"teacher": Fixed(t), "professor": Fixed(p)}, err=gamma)
    for mix, expected in (
        ("distances", (1 - gamma) * logit_distance(s, t, loss) + gamma * logit_distance(s, p, loss)),  # Eq. 4
        ("targets", logit_distance(s, (1 - gamma) * t + gamma * p, loss)),
    ):
        kd = _strategy(loss=loss, professor="professor", mix=mix, weight={"name": "constant", "value": 1.0})
        losses = LossTerms()
        losses.add("task", torch.tensor(0.0))
        kd.compressor_loss_terms(ctx, {}, {"logits": s}, losses)
        assert float(losses.values["logit_kd"]) == pytest.approx(float(expected), rel=1e-6)
        assert ctx.scalars["kd_gamma"] == gamma
    # the two differ for every distance but L1 at this point (and for MSE they always differ unless t == p)
    if loss == "mse":
        d = (1 - gamma) * logit_distance(s, t, loss) + gamma * logit_distance(s, p, loss)
        assert float(d) > float(logit_distance(s, (1 - gamma) * t + gamma * p, loss))


@pytest.mark.parametrize(("schedule", "expected"), [
    ({"name": "constant", "value": 0.1}, [0.1] * 6),
    ({"name": "constant", "value": 0.5}, [0.5] * 6),
    ({"name": "exp_decay"}, [math.exp(1 - t) for t in range(1, 7)]),                       # Eq. 5b, t in epochs
    ({"name": "triangular"}, [0.1 * max(0.0, 1 - abs(t - 3) / 1.5) for t in range(1, 7)]),  # Eq. 5c, T = 6
])
def test_every_kd_weight_schedule_at_known_epochs(schedule: dict, expected: list[float]) -> None:
    kd = _strategy(loss="smooth_l1", weight=schedule, alpha="complement")
    teacher = Fixed(torch.zeros(2, 3))
    for epoch, beta in enumerate(expected):
        ctx = _ctx({"teacher": teacher}, epoch=epoch)
        ctx.total_epochs = 6
        losses = LossTerms()
        losses.add("task", torch.tensor(1.0))
        kd.compressor_loss_terms(ctx, {}, {"logits": torch.ones(2, 3)}, losses)
        assert losses.weights["logit_kd"] == pytest.approx(beta, abs=1e-12)
        assert losses.weights["task"] == pytest.approx(1 - beta, abs=1e-12)  # alpha_t = 1 - beta_t
    if schedule["name"] == "triangular":  # 0 at the ends, the 0.1 peak at mu = T/2 (epoch 3 of 6)
        assert expected[2] == pytest.approx(0.1) and expected[0] == 0.0 and expected[5] == 0.0


def test_error_rate_schedule_is_the_batch_error() -> None:
    kd = _strategy(loss="mse", weight={"name": "error_rate"}, alpha="complement")  # Eq. 5a
    for err in (0.0, 0.375, 1.0):
        ctx = _ctx({"teacher": Fixed(torch.zeros(2, 3))}, epoch=3, err=err)
        losses = LossTerms()
        losses.add("task", torch.tensor(1.0))
        kd.compressor_loss_terms(ctx, {}, {"logits": torch.ones(2, 3)}, losses)
        assert losses.weights["logit_kd"] == err and losses.weights["task"] == 1 - err


def test_class_count_mismatch_is_refused_at_validation(tmp_path, tiny_spec: dict) -> None:
    from support import write_spec

    from compressor.core.errors import SpecError
    from compressor.spec import load_spec

    tiny_spec["teacher"]["num_classes"] = 5
    with pytest.raises(SpecError, match=r"plugins\[0\]\.teacher: teacher 'teacher' has 5 classes but the "
                                        r"student 'student' has 4"):
        load_spec(write_spec(tmp_path / "s.yaml", tiny_spec))


def test_shape_mismatch_is_reported() -> None:
    kd = _strategy()
    losses = LossTerms()
    losses.add("task", torch.tensor(0.0))
    with pytest.raises(ValueError, match="differ in shape"):
        kd.compressor_loss_terms(_ctx({"teacher": Fixed(torch.zeros(2, 5))}), {}, {"logits": torch.zeros(2, 4)},
                                 losses)
