"""Logit knowledge distillation: the student's logits learn from a teacher's.

Seed 001 (Cho et al.), Eq. 1-5::

    L    = alpha_t * L_task + beta_t * L_kd                                        (1), alpha_t = 1 - beta_t
    L_kd = D(f_student, f_teacher)                                                  (3)
    L_kd = (1 - gamma) * D(f_student, f_teacher) + gamma * D(f_student, f_professor)   (4), gamma = batch error

``D`` is MSE or smooth-L1 (the paper's "MAE") between logits (KL with temperature, and L1, are offered too).
``beta_t`` (the *KD weight*) follows any registered schedule: ``constant`` (0.1, 0.5), ``error_rate`` (the
batch's error, Eq. 5a), ``exp_decay`` (exp(1 - t), Eq. 5b), ``triangular`` (Eq. 5c), t in epochs.

Spec::

    plugins:
      - name: logit_kd
        loss: smooth_l1              # kl (with temperature), mse, l1, smooth_l1 (the paper's MAE)
        weight: {name: exp_decay}    # beta_t, any registered schedule
        alpha: complement            # alpha_t = 1 - beta_t; or a number (1.0 keeps the task loss as is)
        teacher: teacher
        professor: professor         # optional second teacher: the hybrid of Eq. 4
        gamma: {name: error_rate}    # gamma = batch error (seed 001's hybrid)
        mix: distances               # Eq. 4; 'targets' mixes the two teachers' logits instead
        cache: true                  # run the frozen teacher(s) once per utterance, reuse their logits

With ``mix: targets`` the target is ``(1 - gamma) * f_teacher + gamma * f_professor`` and one distance is
taken; for MSE and smooth-L1 that differs from Eq. 4 (for KL, too). The teacher may read other inputs than the
student (a text teacher and a speech student): each model picks its own inputs from the batch, and only their
logits must have the same shape. ``cache`` (see :mod:`compressor.teacher_cache`) is for utterance-level logits.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressor.context import StageContext
from compressor.errors import did_you_mean
from compressor.hookspecs import hookimpl
from compressor.losses import LossTerms
from compressor.registry import Args, Registry
from compressor.schedules import Schedule
from compressor.spec import CheckContext
from compressor.strategy import Strategy
from compressor.teacher_cache import Targets, TeacherOutputs, check_cache


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


def num_classes_of(model: nn.Module) -> int | None:
    """The number of classes a classifier declares (``num_classes``) or its ``classifier`` layer gives."""
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    head = getattr(model, "classifier", None)
    return int(head.out_features) if isinstance(head, nn.Linear) else None


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
                                      description="schedule of gamma, the professor's share (Eq. 4)")
        mix: Literal["distances", "targets"] = Field(
            default="distances", description="hybrid: mix the two distances (seed 001 Eq. 4) or the two "
                                             "teachers' logits (one distance to the mixed target)")
        logits_key: str = "logits"
        cache: bool = Field(default=False, description="run frozen teachers once per utterance and reuse "
                                                       "their logits in later epochs and on resume")
        cache_dir: str | None = Field(default=None, description="where cached logits live (default: the run "
                                                                "directory's teacher_cache/)")
        teacher_batching: Literal["batch", "utterance"] = Field(
            default="batch", description="uncached teacher forward per training batch, or per utterance (the "
                                         "canonical outputs a cache holds)")

    def __init__(self, args: Args, registry: Registry | None = None) -> None:
        super().__init__(args)
        from compressor.plugins import get_registry

        registry = registry or get_registry()
        self.weight: Schedule = registry.build("schedule", args.weight)
        self.gamma: Schedule | None = registry.build("schedule", args.gamma) if args.professor else None
        self.outputs: dict[str, TeacherOutputs] = {}

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        names = check.model_names()
        for key in ("teacher", "professor"):
            name = getattr(args, key)
            if name is not None:
                check.require_model(name, key)
            if name is not None and name in check.stage.train and name == check.stage.forward_model:
                raise check.error(f"'{name}' is the model being trained through; a teacher must be another model",
                                  key)
        check.registry.parse_args("schedule", args.weight.get("name", "?"),
                                  {k: v for k, v in args.weight.items() if k != "name"}, check.path + ("weight",))
        if args.professor:
            check.registry.parse_args("schedule", args.gamma.get("name", "?"),
                                      {k: v for k, v in args.gamma.items() if k != "name"},
                                      check.path + ("gamma",))
        student = check.stage.forward_model
        for name in (student, args.teacher, args.professor):
            outputs = check.model_outputs(name) if name is not None and name in names else None
            if outputs is not None and args.logits_key not in outputs:
                raise check.error(f"model '{name}' has no output '{args.logits_key}'"
                                  f"{did_you_mean(args.logits_key, outputs)}", "logits_key")
        if args.logits_key == "logits" and student in names:
            built = check.try_build_model(student)
            n_student = num_classes_of(built) if built is not None else None
            for key in ("teacher", "professor"):
                name = getattr(args, key)
                other = check.try_build_model(name) if name is not None else None
                n = num_classes_of(other) if other is not None else None
                if n is not None and n_student is not None and n != n_student:
                    raise check.error(f"{key} '{name}' has {n} classes but the student '{student}' has "
                                      f"{n_student}: their logits cannot be compared", key)
        if args.cache:
            check_cache(check, [m for m in (args.teacher, args.professor) if m is not None])

    # -- hooks --------------------------------------------------------------------------------------
    def _teacher_outputs(self, ctx: StageContext, name: str) -> TeacherOutputs:
        key = self.args.logits_key

        @torch.no_grad()
        def compute(batch: dict[str, Any]) -> Targets:
            return {key: (ctx.task.forward(ctx.model(name), batch)[key], None)}

        reads = ctx.model_reads(name) if hasattr(ctx, "model_reads") else None
        return TeacherOutputs(name, compute, cache=self.args.cache, batching=self.args.teacher_batching,
                              signature={"plugin": self.name, "logits": key}, input_keys=reads,
                              cache_dir=self.args.cache_dir)

    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        self.outputs = {}
        for name in (self.args.teacher, self.args.professor):
            if name is not None:
                self.outputs[name] = self._teacher_outputs(ctx, name)
                self.outputs[name].start(ctx)

    def _logits(self, ctx: StageContext, batch: dict[str, Any], name: str) -> torch.Tensor:
        if name not in self.outputs:  # used without the stage's prepare hook (unit tests)
            self.outputs[name] = self._teacher_outputs(ctx, name)
        logits, _ = self.outputs[name](ctx, batch)[self.args.logits_key]
        return logits

    @hookimpl
    def compressor_loss_terms(self, ctx: StageContext, batch: dict[str, Any], outputs: dict[str, torch.Tensor],
                              losses: LossTerms) -> None:
        args = self.args
        beta = self.weight(ctx)
        alpha = 1.0 - beta if args.alpha == "complement" else float(args.alpha)
        ctx.log_scalar("kd_weight", beta)
        student = outputs[args.logits_key]
        teacher = self._logits(ctx, batch, args.teacher)
        if teacher.shape != student.shape:
            raise ValueError(f"teacher logits {tuple(teacher.shape)} and student logits "
                             f"{tuple(student.shape)} differ in shape")

        def distance(target: torch.Tensor) -> torch.Tensor:
            return logit_distance(student, target, args.loss, args.temperature, args.smooth_l1_beta)

        if args.professor is None:
            kd = distance(teacher)
        else:
            assert self.gamma is not None
            gamma = float(self.gamma(ctx))
            ctx.log_scalar("kd_gamma", gamma)
            professor = self._logits(ctx, batch, args.professor)
            if args.mix == "distances":  # Eq. 4
                kd = (1.0 - gamma) * distance(teacher) + gamma * distance(professor)
            else:
                kd = distance((1.0 - gamma) * teacher + gamma * professor)
        losses.add("logit_kd", kd, beta)
        losses.set_weight("task", alpha)
        if args.cache:
            ctx.log_scalar("teacher_cache_hits", self.outputs[args.teacher].hit_rate())

    @hookimpl
    def compressor_epoch_end(self, ctx: StageContext) -> None:
        for out in self.outputs.values():
            out.flush()

    @hookimpl
    def compressor_finalize_student(self, ctx: StageContext) -> None:
        for out in self.outputs.values():
            out.flush()


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", LogitKD.name, LogitKD)
