"""The RNN-T loss -log P(y|x) (seed 002 Eq. 3) in PyTorch ops, with its gradient computed in the forward pass.

torchaudio's ``rnnt_loss`` is the reference, and on a GPU the right choice. Its CPU kernel walks the lattice
node by node in one thread: on the large read-speech corpus (batch 16, 74 frames, 25 labels, 128 word pieces)
it took half of a whole training step of the compact RNN-T. This implementation gives the same loss and
gradient (``tests/families/test_rnnt_loss.py`` compares both) several times faster on a CPU:

* the lattice enters only through two log-probabilities per node, blank and the next label
  (``logit - logsumexp(logits)``), computed with one pass over the ``B x T x (U+1) x V`` joint output;
* the forward variables are computed one frame at a time for every label position at once::

      alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u],  alpha[t, u-1] + y[t, u-1])
                  = c[t, u] + logcumsumexp_u(alpha[t-1, u] + blank[t-1, u] - c[t, u]),
      c[t, u] = sum_{k<u} y[t, k]

  in float64 (these tensors are ``B x T x (U+1)``: small), and autograd over that recursion gives the
  gradient with respect to the two log-probabilities of every node;
* the gradient with respect to the logits is then formed once, as torchaudio does, and kept for the
  backward pass: ``d(-log P)/d z_v = (g_blank + g_y) softmax(z)_v - g_blank [v = blank] - g_y [v = y]``.

Memory: one tensor of the joint output's size (the gradient), like torchaudio's kernel.
"""

from __future__ import annotations

from typing import Any

import torch


def _node_log_probs(logits: torch.Tensor, targets: torch.Tensor, blank: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """log P(blank) (B, T, U+1) and log P(next label) (B, T, U) at every node, with ``lse`` and the label
    index used for the gather."""
    b, t, u1, _ = logits.shape
    lse = torch.logsumexp(logits, dim=-1)
    lp_blank = logits[..., blank] - lse
    idx = targets[:, None, : u1 - 1, None].long().expand(b, t, u1 - 1, 1)
    lp_y = logits[:, :, : u1 - 1].gather(-1, idx).squeeze(-1) - lse[:, :, : u1 - 1]
    return lp_blank, lp_y, lse, idx


def log_likelihood(lp_blank: torch.Tensor, lp_y: torch.Tensor, logit_lengths: torch.Tensor,
                   target_lengths: torch.Tensor) -> torch.Tensor:
    """log P(y|x) of each utterance (B,) from the node log-probabilities (differentiable)."""
    bsz, t_max, u1 = lp_blank.shape
    zero = lp_y.new_zeros(bsz, t_max, 1)
    c = torch.cat([zero, lp_y.cumsum(-1)], dim=-1)          # (B, T, U+1): sum of label log-probs below u
    c_t, blank_t = c.unbind(1), lp_blank.unbind(1)         # per frame (one stack in the backward pass)
    rows = [c_t[0]]                                         # frame 0: only label transitions
    for t in range(1, t_max):
        x = rows[-1] + blank_t[t - 1] - c_t[t]
        rows.append(c_t[t] + torch.logcumsumexp(x, dim=-1))
    alpha = torch.stack(rows, dim=1)                        # (B, T, U+1)
    b = torch.arange(bsz, device=lp_blank.device)
    t_last = (logit_lengths.long() - 1).clamp(min=0)
    u_last = target_lengths.long()
    return alpha[b, t_last, u_last] + lp_blank[b, t_last, u_last]


class _RNNTLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                target_lengths: torch.Tensor, blank: int) -> torch.Tensor:
        z = logits.detach().float()
        lp_blank, lp_y, lse, idx = _node_log_probs(z, targets, blank)
        with torch.enable_grad():
            lb = lp_blank.double().requires_grad_()
            ly = lp_y.double().requires_grad_()
            ll = log_likelihood(lb, ly, logit_lengths, target_lengths)
            g_blank, g_y = torch.autograd.grad(ll.sum(), (lb, ly))
        g_blank, g_y = g_blank.float(), g_y.float()
        grad = torch.sub(z, lse[..., None]).exp_()             # softmax, then scaled in place
        g_sum = g_blank.clone()
        g_sum[:, :, :-1] += g_y
        grad.mul_(g_sum[..., None])
        grad[..., blank] -= g_blank
        grad[:, :, :-1].scatter_add_(-1, idx, -g_y[..., None])
        ctx.save_for_backward(grad)
        ctx.logits_dtype = logits.dtype
        return (-ll).float()

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return (grad * grad_out[:, None, None, None]).to(ctx.logits_dtype), None, None, None, None


def rnnt_loss_torch(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                    target_lengths: torch.Tensor, blank: int, reduction: str = "mean") -> torch.Tensor:
    """-log P(y|x) like ``torchaudio.functional.rnnt_loss`` (without its gradient clamp).

    :param logits: joint output (B, T, U+1, V), unnormalised.
    :param targets: (B, U) label ids (padded); ``logit_lengths`` (B,) frames, ``target_lengths`` (B,) labels.
    :param reduction: ``mean`` (over the batch), ``sum`` or ``none``.
    """
    if torch.is_grad_enabled() and logits.requires_grad:
        losses = _RNNTLoss.apply(logits, targets, logit_lengths, target_lengths, int(blank))
    else:  # evaluation: no gradient to form
        with torch.no_grad():
            lp_blank, lp_y, _, _ = _node_log_probs(logits.float(), targets, int(blank))
            losses = (-log_likelihood(lp_blank.double(), lp_y.double(), logit_lengths, target_lengths)).float()
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses
