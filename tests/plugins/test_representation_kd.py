"""Representation KD: every pooling and loss against a hand computation on fixed tensors, projections and
gradients, frame-level alignment, validation, and a cross-modal run (tiny text teacher, feature student)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from support import run_cli, text_spec, write_spec
from support.plugin_ctx import build_strategy, feature_data, make_ctx
from torch import nn

from compressor.core.errors import SpecError, UserError
from compressor.core.losses import LossTerms
from compressor.core.sequences import pool
from compressor.spec import load_spec
from plugins.representation_kd import representation_distance


class Linear(nn.Module):
    """out["seq"] = features @ W (B, T, D); its module ``inner`` computes it; out["vec"] = the masked mean."""

    def __init__(self, w: torch.Tensor, trainable: bool) -> None:
        super().__init__()
        self.inner = nn.Linear(w.shape[0], w.shape[1], bias=False)
        with torch.no_grad():
            self.inner.weight.copy_(w.T)
        self.requires_grad_(trainable)

    def forward(self, batch: dict) -> dict:
        seq = self.inner(batch["features"])
        return {"seq": seq, "vec": seq.sum(1)}


def _batch(lengths: list[int], dim: int = 2) -> dict:
    g = torch.Generator().manual_seed(7)
    feats = torch.randn(len(lengths), max(lengths), dim, generator=g)
    for i, n in enumerate(lengths):
        feats[i, n:] = 1000.0  # padding that must never count
    return {"features": feats, "feature_lengths": torch.tensor(lengths), "ids": [f"u{i}" for i in range(3)]}


def _hand_pool(x: torch.Tensor, lengths: list[int], how: str) -> torch.Tensor:
    rows = []
    for i, n in enumerate(lengths):
        real = x[i, :n]
        rows.append({"cls": x[i, 0], "mean": real.mean(0), "max": real.max(0).values}[how])
    return torch.stack(rows)


def _hand_distance(s: torch.Tensor, t: torch.Tensor, loss: str, reduction: str) -> torch.Tensor:
    """(N, D) vectors: the per-vector distance, averaged over the vectors."""
    if loss == "cosine":
        per = 1 - (s * t).sum(-1) / (s.norm(dim=-1) * t.norm(dim=-1))
    else:
        e = {"l1": (s - t).abs(), "mse": (s - t) ** 2,
             "smooth_l1": torch.where((s - t).abs() < 1, 0.5 * (s - t) ** 2, (s - t).abs() - 0.5)}[loss]
        per = e.sum(-1) if reduction == "sum" else e.mean(-1)
    return per.mean()


@pytest.mark.parametrize("loss", ["l1", "mse", "smooth_l1", "cosine"])
@pytest.mark.parametrize("pooling", ["none", "cls", "mean", "max"])
def test_loss_equals_hand_computation(loss: str, pooling: str) -> None:
    torch.manual_seed(0)
    lengths = [5, 3, 4]
    w_t, w_s = torch.randn(2, 3), torch.randn(2, 2)
    teacher, student = Linear(w_t, trainable=False), Linear(w_s, trainable=True)
    data = feature_data([3, 5, 4])
    ctx = make_ctx({"teacher": teacher, "student": student}, data)
    for reduction in ("mean", "sum"):
        kd = build_strategy("representation_kd", pairs=[{
            "name": "p", "loss": loss, "reduction": reduction, "projection": "linear",
            "teacher": {"module": "inner", "pooling": pooling}, "student": {"output": "seq", "pooling": pooling}}],
            wrapper=f"proj_{reduction}")
        kd.compressor_prepare_models(ctx)
        batch = _batch(lengths)
        ctx.training = True
        out = student(batch)
        losses = LossTerms()
        losses.add("task", torch.tensor(0.0))
        kd.compressor_loss_terms(ctx, batch, out, losses)
        proj = ctx.models[f"proj_{reduction}"]["p"]
        s, t = out["seq"].detach(), batch["features"] @ w_t
        with torch.no_grad():  # D(P(pool(h_s)), pool(h_t))
            if pooling == "none":
                mask = torch.arange(5)[None] < torch.tensor(lengths)[:, None]
                expected = _hand_distance(proj(s)[mask], t[mask], loss, reduction)
            else:
                expected = _hand_distance(proj(_hand_pool(s, lengths, pooling)), _hand_pool(t, lengths, pooling),
                                          loss, reduction)
        assert float(losses.values["repr_p"].detach()) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
        kd.compressor_finalize_student(ctx)
        assert f"proj_{reduction}" not in ctx.models  # dropped at the end of the stage


def test_gradients_reach_projection_and_student_not_frozen_teacher() -> None:
    torch.manual_seed(0)
    teacher, student = Linear(torch.randn(2, 3), trainable=False), Linear(torch.randn(2, 2), trainable=True)
    ctx = make_ctx({"teacher": teacher, "student": student}, feature_data([3, 5]))
    kd = build_strategy("representation_kd", pairs=[{"teacher": {"output": "seq", "pooling": "mean"},
                                                     "student": {"module": "inner", "pooling": "mean"}}])
    kd.compressor_prepare_models(ctx)
    ctx.training = True
    batch = _batch([5, 3, 4])
    losses = LossTerms()
    losses.add("task", torch.tensor(0.0))
    kd.compressor_loss_terms(ctx, batch, student(batch), losses)
    losses.total().backward()
    proj = ctx.models["representation_kd"]["pair0"]
    assert proj.net.weight.grad is not None and proj.net.weight.grad.abs().sum() > 0
    assert student.inner.weight.grad is not None and student.inner.weight.grad.abs().sum() > 0
    assert teacher.inner.weight.grad is None


def test_pool_and_distance_helpers() -> None:
    x = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [99.0, 99.0]]])
    lengths = torch.tensor([2])
    assert pool(x, lengths, "mean").tolist() == [[2.0, -1.0]]
    assert pool(x, lengths, "max").tolist() == [[3.0, 2.0]]
    assert pool(x, lengths, "cls").tolist() == [[1.0, 2.0]]
    s, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    assert float(representation_distance(s, t, "l1", "sum")) == 3.0  # seed 000's ||h_s - h_t||_1
    assert float(representation_distance(s, t, "l1", "mean")) == 1.5
    assert float(representation_distance(s, t, "cosine")) == pytest.approx(1 - 8 / (5**0.5 * 4))
    with pytest.raises(ValueError, match="mask"):  # never a silent broadcast
        representation_distance(torch.zeros(4, 4), torch.zeros(4, 4), "l1", mask=torch.ones(4, 4, dtype=torch.bool))


def test_vector_outputs_without_pooling_are_compared_as_vectors() -> None:
    """A point that is already one vector per utterance (a [CLS] output) needs no pooling: batch 16, width 16."""
    class Vec(nn.Module):
        def __init__(self, w: torch.Tensor, trainable: bool) -> None:
            super().__init__()
            self.w = nn.Parameter(w, requires_grad=trainable)

        def forward(self, batch: dict) -> dict:
            return {"cls": batch["features"].mean(1) @ self.w}

    torch.manual_seed(0)
    teacher, student = Vec(torch.randn(2, 16), False), Vec(torch.randn(2, 16), True)
    ctx = make_ctx({"teacher": teacher, "student": student}, feature_data([3, 5]))
    kd = build_strategy("representation_kd", pairs=[{"teacher": "cls", "student": "cls", "loss": "mse"}])
    kd.compressor_prepare_models(ctx)
    assert "representation_kd" not in ctx.models  # equal widths: no projection
    ctx.training = True
    batch = {"features": torch.randn(16, 4, 2), "feature_lengths": torch.full((16,), 4)}
    losses = LossTerms()
    losses.add("task", torch.tensor(0.0))
    out = student(batch)
    kd.compressor_loss_terms(ctx, batch, out, losses)
    expected = ((out["cls"] - teacher(batch)["cls"]) ** 2).mean()
    assert float(losses.values["repr_pair0"].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_frame_level_lengths_differ_align_or_refuse() -> None:
    class Strided(Linear):
        def forward(self, batch: dict) -> dict:  # half the frame rate
            seq = self.inner(batch["features"])[:, ::2]
            return {"seq": seq}

        def sequence_lengths(self, batch: dict, steps: int) -> torch.Tensor:
            return torch.div(batch["feature_lengths"] + 1, 2, rounding_mode="floor")

    torch.manual_seed(0)
    teacher, student = Strided(torch.randn(2, 2), False), Linear(torch.randn(2, 2), True)
    ctx = make_ctx({"teacher": teacher, "student": student}, feature_data([4, 6]))
    refuse = build_strategy("representation_kd", pairs=[{"teacher": "seq", "student": "seq"}])
    with pytest.raises(UserError, match="teacher's sequence has 3 steps and the student's 6"):
        refuse.compressor_prepare_models(ctx)
    refuse.compressor_finalize_student(ctx)
    mixed = build_strategy("representation_kd", pairs=[{"teacher": "seq", "student": {"output": "seq",
                                                                                       "pooling": "mean"}}])
    with pytest.raises(UserError, match="the teacher's point is a sequence .* pool the teacher's point"):
        mixed.compressor_prepare_models(ctx)
    mixed.compressor_finalize_student(ctx)
    kd = build_strategy("representation_kd", pairs=[{"teacher": "seq", "student": "seq", "align": "interpolate",
                                                     "loss": "mse"}])
    kd.compressor_prepare_models(ctx)
    ctx.training = True
    batch = _batch([6, 4, 6])
    out = student(batch)
    losses = LossTerms()
    losses.add("task", torch.tensor(0.0))
    kd.compressor_loss_terms(ctx, batch, out, losses)
    t = teacher(batch)["seq"]
    expected, n = 0.0, 0
    for i, (lt, ls) in enumerate([(3, 6), (2, 4), (3, 6)]):
        tt = F.interpolate(t[i, :lt].T[None], size=ls, mode="linear", align_corners=False)[0].T
        expected += float(((out["seq"][i, :ls] - tt) ** 2).mean(-1).sum().detach())
        n += ls
    assert float(losses.values["repr_pair0"].detach()) == pytest.approx(expected / n, rel=1e-5)


def test_validation_refusals(tmp_path: Path, tiny_bert: Path) -> None:
    spec = text_spec(tmp_path, tiny_bert)
    plugins = spec["stages"][1]["plugins"]
    plugins.append({"name": "representation_kd", "pairs": [
        {"teacher": {"output": "cls"}, "student": {"module": "encodr", "index": 0, "pooling": "mean"}}]})
    with pytest.raises(SpecError, match=r"plugins\[0\]\.pairs\[0\]\.student\.module: no module 'encodr' in the "
                                        r"student; did you mean 'encoder'\?"):
        load_spec(write_spec(tmp_path / "a.yaml", spec))
    plugins[0]["pairs"][0]["student"] = {"module": "encoder", "index": 0, "pooling": "mean",
                                         "lengths": "token_lengths"}
    with pytest.raises(SpecError, match="lengths 'token_lengths' is not a key of this stage's batches"):
        load_spec(write_spec(tmp_path / "b.yaml", spec))
    plugins[0]["pairs"][0]["student"] = {"module": "encoder", "index": 0, "pooling": "mean"}
    plugins[0]["pairs"][0]["projection"] = "none"
    with pytest.raises(SpecError, match="projection: none, but the student's width 8 differs from the teacher's 16"):
        load_spec(write_spec(tmp_path / "c.yaml", spec))
    plugins[0]["pairs"][0]["projection"] = "auto"
    plugins[0]["pairs"][0]["weight"] = {"name": "exp_decy"}
    with pytest.raises(SpecError, match=r"pairs\[0\]\.weight.*unknown schedule 'exp_decy'; did you mean 'exp_decay'"):
        load_spec(write_spec(tmp_path / "d.yaml", spec))


def test_cross_modal_text_teacher_speech_student_run(tmp_path: Path, tiny_bert: Path) -> None:
    spec = text_spec(tmp_path, tiny_bert)
    spec["stages"][1]["plugins"] = [{"name": "representation_kd", "pairs": [
        {"name": "cls", "teacher": {"output": "cls"}, "student": {"output": "hidden"}, "loss": "l1",
         "reduction": "sum"},
        {"name": "tokens", "teacher": {"output": "states", "pooling": "max"},
         "student": {"module": "encoder", "index": 0, "pooling": "max"}, "loss": "cosine", "projection": "mlp",
         "weight": {"name": "linear", "start": 1.0, "end": 0.0}}]}]
    done = run_cli("run", str(write_spec(tmp_path / "s.yaml", spec)))
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs" / "xmodal").iterdir()
    import json

    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    distil = [r for r in steps if r.get("stage") == "distil" and "loss/repr_cls" in r]
    assert len(distil) == 6 and all(r["loss/repr_tokens"] >= 0 for r in distil)
    assert distil[0]["weight/repr_tokens"] == 1.0 and distil[-1]["weight/repr_tokens"] == 0.0
    assert (run_dir / "plots" / "loss_repr_cls.png").exists()
    final = sorted(p.stem for p in (run_dir / "final").glob("*.pt"))
    assert final == ["student", "teacher"]  # the projections were dropped with the stage
