"""The PyTorch RNN-T loss equals torchaudio's (value and gradient), and the task uses it on the CPU."""

from __future__ import annotations

import pytest
import torch
from torchaudio.functional import rnnt_loss

from compressor.families.rnnt.loss import _node_log_probs, log_likelihood, rnnt_loss_torch
from compressor.families.rnnt.task import RNNTTask, rnnt_lattice_loss


def _lattice(scale: float, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    b, t, u, v = 4, 23, 9, 17
    logits = torch.randn(b, t, u + 1, v, generator=g) * scale
    targets = torch.randint(0, v - 1, (b, u), generator=g, dtype=torch.int32)
    logit_lengths = torch.tensor([23, 17, 9, 1], dtype=torch.int32)   # a 1-frame utterance too
    target_lengths = torch.tensor([9, 4, 9, 0], dtype=torch.int32)    # and an empty transcript
    return logits, targets, logit_lengths, target_lengths


@pytest.mark.parametrize("scale", [0.5, 8.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_and_gradient_equal_torchaudio(scale: float, reduction: str) -> None:
    logits, targets, tl, ul = _lattice(scale)
    v = logits.shape[-1]
    a = logits.clone().requires_grad_()
    ref = rnnt_loss(a, targets, tl, ul, blank=v - 1, reduction=reduction)
    (g_ref,) = torch.autograd.grad(ref.sum(), a)
    b = logits.clone().requires_grad_()
    ours = rnnt_loss_torch(b, targets, tl, ul, blank=v - 1, reduction=reduction)
    (g_ours,) = torch.autograd.grad(ours.sum(), b)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-4)
    # torchaudio's float32 kernel is itself off by up to ~2e-4 on peaked lattices (see the float64 test below)
    assert torch.allclose(g_ours, g_ref, atol=3e-4)
    # the per-utterance weights of the backward pass are honoured
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    c = logits.clone().requires_grad_()
    (g_w,) = torch.autograd.grad((rnnt_loss_torch(c, targets, tl, ul, v - 1, "none") * w).sum(), c)
    d = logits.clone().requires_grad_()
    (g_w_ref,) = torch.autograd.grad((rnnt_loss(d, targets, tl, ul, blank=v - 1, reduction="none") * w).sum(), d)
    assert torch.allclose(g_w, g_w_ref, atol=1e-3)


def test_blank_other_than_last_and_float64_reference() -> None:
    logits, targets, tl, ul = _lattice(4.0, seed=3)
    targets = targets + 1                      # labels 1..V-1, blank 0
    targets[targets >= logits.shape[-1]] = 1
    a = logits.clone().requires_grad_()
    ref = rnnt_loss(a, targets, tl, ul, blank=0, reduction="none")
    ours = rnnt_loss_torch(logits, targets, tl, ul, blank=0, reduction="none")
    assert torch.allclose(ours, ref.detach(), rtol=1e-5, atol=1e-4)
    # against an independent float64 computation of the same recursion, ours is closer than float32 kernels
    d = logits.double().requires_grad_()
    lb, ly, _, _ = _node_log_probs(d, targets, 0)
    (g64,) = torch.autograd.grad((-log_likelihood(lb, ly, tl, ul)).sum(), d)
    b = logits.clone().requires_grad_()
    (g,) = torch.autograd.grad(rnnt_loss_torch(b, targets, tl, ul, 0, "sum"), b)
    assert (g.double() - g64).abs().max() < 1e-5


def test_no_grad_path_matches_and_task_picks_torch_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    logits, targets, tl, ul = _lattice(2.0)
    v = logits.shape[-1]
    with torch.no_grad():
        ours = rnnt_loss_torch(logits, targets, tl, ul, v - 1, "none")
    ref = rnnt_loss(logits, targets, tl, ul, blank=v - 1, reduction="none")
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-4)
    outputs = {"logits": logits, "logit_lengths": tl}
    batch = {"tokens": targets.long(), "token_lengths": ul.long()}
    import compressor.families.rnnt.task as task_module

    calls: list[str] = []
    real_torch, real_audio = task_module.rnnt_loss_torch, task_module.rnnt_loss
    monkeypatch.setattr(task_module, "rnnt_loss_torch", lambda *a, **k: calls.append("torch") or real_torch(*a, **k))
    monkeypatch.setattr(task_module, "rnnt_loss", lambda *a, **k: calls.append("torchaudio") or real_audio(*a, **k))
    auto = rnnt_lattice_loss(outputs, batch, v - 1, "sum", impl="auto")
    audio = rnnt_lattice_loss(outputs, batch, v - 1, "sum", impl="torchaudio")
    clamped = rnnt_lattice_loss(outputs, batch, v - 1, "sum", clamp=1.0)   # only torchaudio clamps
    assert calls == ["torch", "torchaudio", "torchaudio"]
    assert torch.allclose(auto, audio, rtol=1e-5) and torch.allclose(clamped, audio)
    calls.clear()
    task = RNNTTask(RNNTTask.Args(loss_impl="torchaudio"), {"vocab_size": v, "blank_id": v - 1})
    task.loss(outputs, batch)
    RNNTTask(RNNTTask.Args(), {"vocab_size": v, "blank_id": v - 1}).loss(outputs, batch)
    assert calls == ["torchaudio", "torch"]
