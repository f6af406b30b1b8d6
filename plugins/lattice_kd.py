"""Lattice knowledge distillation for RNN-T (Panchapagesan et al. 2021, "Efficient knowledge distillation
for RNN-transducer models"; the KD baseline of seed 002).

At every node (t, u) of the RNN-T output lattice the teacher's and the student's posteriors over the
vocabulary are collapsed to three classes: the correct next label ``y_{u+1}``, blank, and everything else.
The distillation loss is the KL divergence between the collapsed teacher and student distributions,
summed over the valid nodes (t < T'_b, u <= U_b) of each utterance and averaged over the batch::

    L_distill = mean_b  sum_{t,u}  sum_{c in {y, blank, rest}}  P_T(c|t,u) log(P_T(c|t,u) / P_S(c|t,u))
    L = L_rnnt + alpha * L_distill,      alpha = 1e-3 (seed 002, following [12])

At the top row u = U_b there is no next label: the classes are blank and rest.

Memory: the collapsed log-probabilities come straight from the joint logits (one logsumexp over V, one
gather of the label, one slice of the blank; "rest" = log(1 - P(y) - P(blank))), so no tensor of the
lattice's size B x T x U x V is created beyond the joint output itself. The teacher's lattice can be computed
``teacher_chunk`` utterances at a time, so its full B x T x U x V output never exists either.

Spec::

    plugins:
      - {name: lattice_kd, teacher: teacher, alpha: 1.0e-3}
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from compressor.core.context import StageContext
from compressor.core.hookspecs import hookimpl
from compressor.core.losses import LossTerms
from compressor.core.registry import Args, Registry
from compressor.core.strategy import Strategy
from compressor.spec import CheckContext

_LOG_EPS = -1e-6  # log-probabilities are clamped below 0 so that log(1 - P) stays finite


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate near 0 and for very negative x."""
    x = x.clamp(max=_LOG_EPS)
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def collapsed_log_probs(logits: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor,
                        blank_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities of (correct next label, blank, rest) at every lattice node.

    :param logits: joint output (B, T, U+1, V).
    :param targets: (B, U) label ids, padded; ``target_lengths`` (B,).
    :returns: ``log_y, log_blank, log_rest`` each (B, T, U+1), and ``has_y`` (B, 1, U+1): whether node u has a
        next label (u < U_b). ``log_y`` is meaningless where ``has_y`` is False, and ``log_rest`` there is
        log(1 - P(blank)).
    """
    b, t, u1, _ = logits.shape
    lse = torch.logsumexp(logits, dim=-1)                                   # (B, T, U+1)
    labels = torch.zeros(b, u1, dtype=torch.long, device=logits.device)
    labels[:, : u1 - 1] = targets[:, : u1 - 1]
    has_y = (torch.arange(u1, device=logits.device)[None, :] < target_lengths[:, None])[:, None, :]
    log_y = logits.gather(-1, labels[:, None, :, None].expand(b, t, u1, 1)).squeeze(-1) - lse
    log_blank = logits[..., blank_id] - lse
    no_y = torch.full_like(log_y, float("-inf"))
    log_y_or_blank = torch.logaddexp(torch.where(has_y, log_y, no_y), log_blank)
    log_rest = log1mexp(log_y_or_blank)
    return log_y, log_blank, log_rest, has_y


def node_mask(logit_lengths: torch.Tensor, target_lengths: torch.Tensor, t: int, u1: int) -> torch.Tensor:
    """(B, T, U+1) bool: the valid lattice nodes t < T'_b and u <= U_b."""
    dev = logit_lengths.device
    in_t = torch.arange(t, device=dev)[None, :] < logit_lengths[:, None]
    in_u = torch.arange(u1, device=dev)[None, :] <= target_lengths[:, None]
    return in_t[:, :, None] & in_u[:, None, :]


def collapsed_kl(teacher: tuple[torch.Tensor, ...], student: tuple[torch.Tensor, ...], mask: torch.Tensor
                 ) -> torch.Tensor:
    """Per-utterance sum over valid nodes of KL(P_teacher || P_student) on the 3 collapsed classes: (B,)."""
    t_y, t_b, t_r, has_y = teacher
    s_y, s_b, s_r, _ = student
    kl = t_b.exp() * (t_b - s_b) + t_r.exp() * (t_r - s_r)
    kl_y = t_y.exp() * (t_y - s_y)
    kl = kl + torch.where(has_y, kl_y, torch.zeros_like(kl_y))
    return (kl * mask).sum(dim=(1, 2))


def lattice_distillation_loss(student_logits: torch.Tensor, teacher_collapsed: tuple[torch.Tensor, ...],
                              targets: torch.Tensor, target_lengths: torch.Tensor,
                              logit_lengths: torch.Tensor, blank_id: int) -> torch.Tensor:
    """Mean over the batch of the collapsed-lattice KL (see the module docstring)."""
    student = collapsed_log_probs(student_logits.float(), targets, target_lengths, blank_id)
    mask = node_mask(logit_lengths, target_lengths, student_logits.shape[1], student_logits.shape[2])
    return collapsed_kl(teacher_collapsed, student, mask).mean()


class LatticeKD(Strategy):
    """Lattice KD for RNN-T: KL of 3-class collapsed posteriors at every (t, u) node, weight alpha."""

    name = "lattice_kd"

    class Args(Args):
        teacher: str = "teacher"
        alpha: float = Field(default=1e-3, ge=0,
                             description="weight of L_distill (L = L_rnnt + alpha L_distill)")
        teacher_chunk: int | None = Field(
            default=None, ge=1,
            description="utterances per teacher forward (bounds the teacher lattice's memory)")
        logits_key: str = "logits"

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        check.require_model(args.teacher, "teacher")
        if args.teacher == check.stage.forward_model:
            raise check.error(f"'{args.teacher}' is the model being trained; a teacher must be another model",
                              "teacher")
        teacher = check.build_model(args.teacher)
        student = check.build_model(check.stage.forward_model)
        tv, sv = getattr(teacher, "vocab_size", None), getattr(student, "vocab_size", None)
        if tv is not None and sv is not None and tv != sv:
            raise check.error(f"teacher vocabulary ({tv}) and student vocabulary ({sv}) differ", "teacher")

    @torch.no_grad()
    def teacher_collapsed(self, ctx: StageContext, batch: dict[str, Any], blank_id: int
                          ) -> tuple[torch.Tensor, ...]:
        n = int(batch["tokens"].shape[0])
        chunk = self.args.teacher_chunk or n
        if chunk >= n:  # the whole batch at once: the step's one teacher forward, shared with other strategies
            logits = ctx.forward_once(self.args.teacher, batch).outputs[self.args.logits_key].float()
            return collapsed_log_probs(logits, batch["tokens"], batch["token_lengths"], blank_id)
        teacher = ctx.model(self.args.teacher)
        parts = []
        for lo in range(0, n, chunk):
            sub = {k: (v[lo:lo + chunk] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n
                       else v) for k, v in batch.items()}
            logits = ctx.task.forward(teacher, sub)[self.args.logits_key].float()
            parts.append(collapsed_log_probs(logits, sub["tokens"], sub["token_lengths"], blank_id))
            del logits
        return tuple(torch.cat([p[i] for p in parts], 0) for i in range(4))

    @hookimpl
    def compressor_loss_terms(self, ctx: StageContext, batch: dict[str, Any],
                              outputs: dict[str, torch.Tensor], losses: LossTerms) -> None:
        logits = outputs[self.args.logits_key]
        if logits.dim() != 4:
            raise ValueError("lattice_kd needs RNN-T lattice logits (B, T, U+1, V), got "
                             f"{tuple(logits.shape)}")
        blank_id = int(ctx.task.info.get("blank_id", logits.shape[-1] - 1))
        teacher = self.teacher_collapsed(ctx, batch, blank_id)
        if teacher[0].shape != logits.shape[:3]:
            raise ValueError(f"teacher lattice {tuple(teacher[0].shape)} and student lattice "
                             f"{tuple(logits.shape[:3])} differ (different frame stacking?)")
        kd = lattice_distillation_loss(logits, teacher, batch["tokens"], batch["token_lengths"],
                                       outputs["logit_lengths"], blank_id)
        losses.add("lattice_kd", kd, self.args.alpha)
        ctx.log_scalar("lattice_kd_alpha", self.args.alpha)


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", LatticeKD.name, LatticeKD)
