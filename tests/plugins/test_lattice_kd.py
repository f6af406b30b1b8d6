"""Lattice KD: the 3-class collapsed KL equals a reference from full distributions, and is zero for
identical models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compressor.core.context import StageContext
from compressor.core.losses import LossTerms
from compressor.families.rnnt.model import RNNTArgs, build_rnnt
from compressor.families.rnnt.task import RNNTTask
from compressor.spec import StageSpec
from plugins.lattice_kd import LatticeKD, collapsed_log_probs, lattice_distillation_loss

V, BLANK = 7, 6


def _reference(teacher: torch.Tensor, student: torch.Tensor, targets: torch.Tensor, t_len: torch.Tensor,
               u_len: torch.Tensor) -> torch.Tensor:
    """Loop over every node with full float64 softmaxes, summing the probabilities of each class."""
    total = torch.zeros((), dtype=torch.float64)
    for b in range(teacher.shape[0]):
        for t in range(int(t_len[b])):
            for u in range(int(u_len[b]) + 1):
                pt = teacher[b, t, u].double().softmax(-1)
                ps = student[b, t, u].double().softmax(-1)
                classes = [[BLANK]]
                if u < int(u_len[b]):
                    classes.append([int(targets[b, u])])
                used = {c for cls in classes for c in cls}
                classes.append([v for v in range(V) if v not in used])
                qt = torch.stack([pt[c].sum() for c in classes])
                qs = torch.stack([ps[c].sum() for c in classes])
                total = total + (qt * (qt.log() - qs.log())).sum()
    return total / teacher.shape[0]


def _lattice(seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    b, t, u = 3, 5, 4
    teacher = 3 * torch.randn(b, t, u + 1, V, generator=g)
    student = 3 * torch.randn(b, t, u + 1, V, generator=g)
    targets = torch.randint(0, V - 1, (b, u), generator=g)
    return teacher, student, targets, torch.tensor([5, 3, 4]), torch.tensor([4, 2, 0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collapsed_kl_equals_full_distribution_reference(seed: int) -> None:
    teacher, student, targets, t_len, u_len = _lattice(seed)
    collapsed = collapsed_log_probs(teacher, targets, u_len, BLANK)
    ours = lattice_distillation_loss(student, collapsed, targets, u_len, t_len, BLANK)
    ref = _reference(teacher, student, targets, t_len, u_len)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-5)
    assert ours.item() > 0


def test_collapsed_probabilities_sum_to_one() -> None:
    teacher, _, targets, _, u_len = _lattice(0)
    y, blank, rest, has_y = collapsed_log_probs(teacher, targets, u_len, BLANK)
    total = torch.where(has_y, y.exp(), torch.zeros_like(y)) + blank.exp() + rest.exp()
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5)


def test_zero_for_identical_models_with_zero_gradient() -> None:
    teacher, _, targets, t_len, u_len = _lattice(3)
    student = teacher.clone().requires_grad_(True)
    loss = lattice_distillation_loss(student, collapsed_log_probs(teacher, targets, u_len, BLANK), targets,
                                     u_len, t_len, BLANK)
    assert abs(loss.item()) < 1e-6
    loss.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().max() < 1e-5


def test_confident_teacher_stays_finite() -> None:
    teacher, student, targets, t_len, u_len = _lattice(4)
    teacher = teacher * 100  # near one-hot posteriors: P(rest) ~ 0
    student = student.requires_grad_(True)
    loss = lattice_distillation_loss(student, collapsed_log_probs(teacher, targets, u_len, BLANK), targets,
                                     u_len, t_len, BLANK)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def _tiny_kd_step() -> tuple[StageContext, torch.nn.Module, torch.nn.Module, RNNTTask, dict[str, torch.Tensor]]:
    """A tiny RNN-T teacher and student in a distillation stage's context, and one batch."""
    torch.manual_seed(0)
    info = {"feature_dim": 80, "vocab_size": V, "blank_id": BLANK}
    teacher = build_rnnt(RNNTArgs(preset="exp1_teacher", size="tiny"), info)
    student = build_rnnt(RNNTArgs(preset="exp1_student", size="tiny"), info)
    task = RNNTTask(RNNTTask.Args(), info)
    batch = {"features": torch.randn(4, 30, 80), "feature_lengths": torch.tensor([30, 27, 21, 18]),
             "tokens": torch.randint(0, V - 1, (4, 3)), "token_lengths": torch.tensor([3, 2, 3, 1])}
    ctx = StageContext(name="kd", index=0, stage=StageSpec(name="kd", train=["student"], steps=1),
                       models={"teacher": teacher, "student": student}, forward_model="student", task=task,
                       data=None, device=torch.device("cpu"), run_dir=Path("."), spec={})
    return ctx, teacher, student, task, batch


def test_strategy_adds_weighted_term_and_teacher_gets_no_gradient() -> None:
    ctx, teacher, student, task, batch = _tiny_kd_step()
    losses = LossTerms()
    outputs = task.forward(student, batch)
    losses.add("task", task.loss(outputs, batch))
    LatticeKD(LatticeKD.Args(teacher_chunk=3)).compressor_loss_terms(ctx, batch, outputs, losses)
    assert losses.weights["lattice_kd"] == 1e-3
    full = LatticeKD(LatticeKD.Args())
    losses2 = LossTerms()
    full.compressor_loss_terms(ctx, batch, outputs, losses2)
    assert torch.allclose(losses.values["lattice_kd"], losses2.values["lattice_kd"], rtol=1e-5)
    losses.total().backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.encoder.layers[0].weight_ih_l0.grad is not None


def test_whole_batch_teacher_forward_is_the_steps_shared_one() -> None:
    """Unchunked, lattice KD takes the teacher's lattice from the step's one shared forward (ctx.forward_once),
    so a second strategy on the same teacher does not run it again; chunked, it runs its own sub-batches."""
    ctx, teacher, student, task, batch = _tiny_kd_step()
    teacher.requires_grad_(False)
    calls: list[int] = []
    hook = teacher.register_forward_hook(lambda *_: calls.append(1))
    outputs = task.forward(student, batch)
    for strategy in (LatticeKD(LatticeKD.Args()), LatticeKD(LatticeKD.Args(alpha=0.5))):
        strategy.compressor_loss_terms(ctx, batch, outputs, LossTerms())
    assert len(calls) == 1
    ctx.new_batch()
    LatticeKD(LatticeKD.Args(teacher_chunk=2)).compressor_loss_terms(ctx, batch, outputs, LossTerms())
    hook.remove()
    assert len(calls) == 3  # two sub-batches of its own
