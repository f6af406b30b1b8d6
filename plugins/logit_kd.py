"""Logit knowledge distillation: the student's logits learn from a teacher's.

Seed 001 (Cho et al.), Eq. 1: ``L = alpha_t * L_task + beta_t * L_kd`` with ``alpha_t + beta_t = 1``, where
``L_kd`` is a distance between teacher and student logits and ``beta_t`` (the *KD weight*) follows a
schedule: constant, exponential decay ``exp(1 - t)``, triangular, or the batch error rate (Eq. 5).

Spec::

    plugins:
      - name: logit_kd
        loss: l1                 # kl (with temperature), mse, l1 (MAE), smooth_l1
        weight: {name: exp_decay}        # beta_t, any registered schedule
        alpha: complement        # alpha_t = 1 - beta_t; or a number (1.0 keeps the task loss as is)
        teacher: teacher
        professor: professor     # optional second teacher; targets mix (1-gamma)*teacher + gamma*professor
        gamma: {name: error_rate}        # seed 001's hybrid: gamma = batch error

The teacher may read other inputs than the student (a text BERT teaching a speech model): each model picks
its own inputs from the batch, and only their logits must have the same shape.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from compressor.context import StageContext
from compressor.hookspecs import hookimpl
from compressor.losses import LossTerms
from compressor.registry import Args, Registry
from compressor.schedules import Schedule
from compressor.spec import CheckContext
from compressor.strategy import Strategy


def logit_distance(student: torch.Tensor, teacher: torch.Tensor, loss: str, temperature: float = 1.0,
                   smooth_l1_beta: float = 1.0) -> torch.Tensor:
    """Distance between logits of shape (..., C), averaged over all leading positions.

    ``kl`` is Hinton's KL(softmax(t/T) || softmax(s/T)) scaled by T^2 so gradients keep their size.
    """
    s = student.float().reshape(-1, student.shape[-1])
    t = teacher.detach().float().reshape(-1, teacher.shape[-1])
    if loss == "kl":
        log_p_s = F.log_softmax(s / temperature, dim=-1)
        log_p_t = F.log_softmax(t / temperature, dim=-1)
        return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * temperature**2
    if loss == "mse":
        return F.mse_loss(s, t)
    if loss == "l1":
        return F.l1_loss(s, t)
    if loss == "smooth_l1":
        return F.smooth_l1_loss(s, t, beta=smooth_l1_beta)
    raise ValueError(f"unknown logit loss '{loss}'")


class LogitKD(Strategy):
    """Distil teacher logits into the student (KL/MSE/L1/smooth-L1) with a scheduled KD weight."""

    name = "logit_kd"

    class Args(Args):
        loss: Literal["kl", "mse", "l1", "smooth_l1"] = "kl"
        temperature: float = Field(default=1.0, gt=0)
        smooth_l1_beta: float = Field(default=1.0, gt=0)
        weight: dict[str, Any] = Field(default_factory=lambda: {"name": "constant", "value": 1.0},
                                       description="schedule of beta_t (the KD weight)")
        alpha: float | Literal["complement"] = Field(
            default=1.0, description="weight of the task loss: a number, or 'complement' for 1 - beta_t")
        teacher: str = "teacher"
        professor: str | None = None
        gamma: dict[str, Any] = Field(default_factory=lambda: {"name": "error_rate"},
                                      description="schedule of gamma, the professor's share of the target")
        logits_key: str = "logits"

    def __init__(self, args: Args, registry: Registry | None = None) -> None:
        super().__init__(args)
        from compressor.plugins import get_registry

        registry = registry or get_registry()
        self.weight: Schedule = registry.build("schedule", args.weight)
        self.gamma: Schedule | None = registry.build("schedule", args.gamma) if args.professor else None

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        for key in ("teacher", "professor"):
            name = getattr(args, key)
            if name is not None and name not in check.model_names():
                raise check.error(f"no model named '{name}' in the spec (models: {', '.join(check.model_names())})",
                                  key)
            if name is not None and name in check.stage.train and name == check.stage.forward_model:
                raise check.error(f"'{name}' is the model being trained through; a teacher must be another model",
                                  key)
        check.registry.parse_args("schedule", args.weight.get("name", "?"),
                                  {k: v for k, v in args.weight.items() if k != "name"}, check.path + ("weight",))
        if args.professor:
            check.registry.parse_args("schedule", args.gamma.get("name", "?"),
                                      {k: v for k, v in args.gamma.items() if k != "name"},
                                      check.path + ("gamma",))

    @torch.no_grad()
    def _target(self, ctx: StageContext, batch: dict[str, Any]) -> torch.Tensor:
        teacher = ctx.model(self.args.teacher)
        target = ctx.task.forward(teacher, batch)[self.args.logits_key]
        if self.args.professor:
            gamma = self.gamma(ctx)
            ctx.log_scalar("kd_gamma", gamma)
            professor = ctx.task.forward(ctx.model(self.args.professor), batch)[self.args.logits_key]
            target = (1.0 - gamma) * target + gamma * professor
        return target

    @hookimpl
    def compressor_loss_terms(self, ctx: StageContext, batch: dict[str, Any], outputs: dict[str, torch.Tensor],
                              losses: LossTerms) -> None:
        beta = self.weight(ctx)
        alpha = 1.0 - beta if self.args.alpha == "complement" else float(self.args.alpha)
        ctx.log_scalar("kd_weight", beta)
        student_logits = outputs[self.args.logits_key]
        target = self._target(ctx, batch)
        if target.shape != student_logits.shape:
            raise ValueError(f"teacher logits {tuple(target.shape)} and student logits "
                             f"{tuple(student_logits.shape)} differ in shape")
        kd = logit_distance(student_logits, target, self.args.loss, self.args.temperature,
                            self.args.smooth_l1_beta)
        losses.add("logit_kd", kd, beta)
        losses.set_weight("task", alpha)


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", LogitKD.name, LogitKD)
