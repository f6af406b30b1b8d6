"""Strategies that need the teacher's outputs in the same step share one teacher forward."""

from __future__ import annotations

import torch
from support.plugin_ctx import build_strategy, feature_data, make_ctx

from compressor.core.losses import LossTerms
from compressor.families.slu.classifier import SeqClassifier


def _step(ctx, strategies, batch) -> tuple[LossTerms, int]:
    """One training step as the engine runs it; returns the loss terms and the teacher's forward count."""
    calls = []
    hook = ctx.models["teacher"].register_forward_hook(lambda *_: calls.append(1))
    try:
        getattr(ctx, "new_batch", lambda: None)()  # the engine forgets the shared forwards per batch
        outputs = ctx.task.forward(ctx.models["student"], batch)
        losses = LossTerms()
        losses.add("task", outputs["logits"].sum() * 0.0)
        for s in strategies:
            s.compressor_loss_terms(ctx, batch, outputs, losses)
        getattr(ctx, "new_batch", lambda: None)()  # the engine forgets the shared forwards per batch
    finally:
        hook.remove()
    return losses, len(calls)


def _setup():
    torch.manual_seed(0)
    teacher = SeqClassifier(2, 3, hidden=8, layers=2).eval().requires_grad_(False)
    student = SeqClassifier(2, 3, hidden=4, layers=1)
    data = feature_data([4, 6, 5])
    ctx = make_ctx({"teacher": teacher, "student": student}, data)
    logit = build_strategy("logit_kd", loss="mse")
    repr_ = build_strategy("representation_kd", pairs=[
        {"name": "enc", "teacher": {"module": "encoder", "index": 0, "pooling": "mean"},
         "student": {"output": "hidden"}},
        {"name": "hid", "teacher": {"output": "hidden"}, "student": {"output": "hidden"}}])
    for s in (logit, repr_):
        s.compressor_prepare_models(ctx)
    return ctx, logit, repr_, data


def test_two_strategies_run_the_teacher_once_per_step() -> None:
    ctx, logit, repr_, data = _setup()
    batch = data.collate([data.dataset("train")[i] for i in range(3)])
    losses, forwards = _step(ctx, [logit, repr_], batch)
    assert forwards == 1
    assert set(losses.values) == {"task", "logit_kd", "repr_enc", "repr_hid"}
    # the same figures as each strategy alone, with its own teacher forward
    alone_logit, n1 = _step(ctx, [logit], batch)
    alone_repr, n2 = _step(ctx, [repr_], batch)
    assert n1 == n2 == 1
    assert torch.allclose(losses.values["logit_kd"], alone_logit.values["logit_kd"])
    for k in ("repr_enc", "repr_hid"):
        assert torch.allclose(losses.values[k], alone_repr.values[k])
    # a new batch runs the teacher again: the memo lasts one batch
    _, again = _step(ctx, [logit, repr_], data.collate([data.dataset("train")[i] for i in range(2)]))
    assert again == 1
