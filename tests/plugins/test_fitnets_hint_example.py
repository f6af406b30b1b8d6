"""The plugin guide's example strategy (examples/fitnets_hint) averages its hint loss over real frames only."""

from __future__ import annotations

import importlib.util

import torch
from support import REPO
from support.plugin_ctx import feature_data, make_ctx

from compressor.core.losses import LossTerms
from compressor.families.slu.classifier import SeqClassifier

# loaded from its file: putting its folder on sys.path would let a pip build's egg-info there register the
# plugin for every later test of the session
_SPEC = importlib.util.spec_from_file_location(
    "fitnets_hint_example", REPO / "examples" / "fitnets_hint" / "fitnets_hint"
    / "__init__.py")
assert _SPEC is not None and _SPEC.loader is not None
_MODULE = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_MODULE)
FitNetsHint = _MODULE.FitNetsHint


def _loss(strategy: FitNetsHint, ctx, batch) -> torch.Tensor:
    getattr(ctx, "new_batch", lambda: None)()
    outputs = ctx.task.forward(ctx.models["student"], batch)
    losses = LossTerms()
    strategy.compressor_loss_terms(ctx, batch, outputs, losses)
    return losses.values["hint"]


def test_hint_loss_ignores_padded_frames() -> None:
    torch.manual_seed(0)
    teacher = SeqClassifier(2, 3, hidden=6, layers=1).eval().requires_grad_(False)
    student = SeqClassifier(2, 3, hidden=4, layers=1)
    data = feature_data([6, 3, 4])
    ctx = make_ctx({"teacher": teacher, "student": student}, data)
    strategy = FitNetsHint(FitNetsHint.Args(student_layer="encoder", teacher_layer="encoder"))
    strategy.compressor_prepare_models(ctx)
    batch = data.collate([data.dataset("train")[i] for i in range(3)])  # padded to 6 frames
    value = _loss(strategy, ctx, batch)
    noisy = {**batch, "features": batch["features"].clone()}
    for i, n in enumerate(batch["feature_lengths"].tolist()):
        noisy["features"][i, n:] = 1e3  # what sits in the padding must not matter
    assert torch.allclose(_loss(strategy, ctx, noisy), value)
    # by hand: the mean over the 13 real frames of the per-frame squared error
    with torch.no_grad():
        s, _ = student.encoder((batch["features"] - student.feature_mean) / student.feature_std)
        t, _ = teacher.encoder((batch["features"] - teacher.feature_mean) / teacher.feature_std)
        err = ((ctx.models["hint_regressor"](s) - t) ** 2).mean(-1)
        mask = torch.arange(6)[None] < batch["feature_lengths"][:, None]
    assert torch.allclose(value, err[mask].mean(), atol=1e-6)
    strategy.compressor_finalize_student(ctx)
