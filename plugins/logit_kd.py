"""Logit knowledge distillation: the student's logits learn from a teacher's.

Seed 001 (Cho et al.), Eq. 1-5::

    L    = alpha_t * L_task + beta_t * L_kd                                        (1), alpha_t = 1 - beta_t
    L_kd = D(f_student, f_teacher)                                                  (3)
    L_kd = (1 - gamma) * D(f_student, f_teacher) + gamma * D(f_student, f_professor)   (4), gamma = batch error

``D`` is MSE or smooth-L1 (the paper's "MAE") between logits (KL with temperature, and L1, are offered too).
Seed 000's FT-KD is ``||o^s - o^t||_1``: ``loss: l1`` sums over the classes as that norm does (and averages
over utterances and positions); ``reduction: mean`` averages over the classes too (1/C of the norm).
``beta_t`` (the *KD weight*) follows any registered schedule: ``constant`` (0.1, 0.5), ``error_rate`` (the
batch's error, Eq. 5a), ``exp_decay`` (exp(1 - t), Eq. 5b), ``triangular`` (Eq. 5c), t in epochs.

Spec::

    plugins:
      - name: logit_kd
        loss: smooth_l1              # kl (with temperature), mse, l1, smooth_l1 (the paper's MAE)
        reduction: auto              # over classes: auto (sum for l1, mean for mse/smooth_l1), sum, mean
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
logits must have the same shape. ``cache`` (see :mod:`compressor.teaching.teacher_cache`) is for utterance-level logits.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressor.core.context import StageContext
from compressor.core.errors import UserError, did_you_mean
from compressor.core.hookspecs import hookimpl
from compressor.core.losses import LossTerms
from compressor.core.registry import Args, Registry
from compressor.core.schedules import Schedule, ScheduleArg
from compressor.core.strategy import Strategy
from compressor.spec import CheckContext
from compressor.teaching.teacher_cache import Targets, TeacherOutputs, check_cache

#: How each distance reduces over the classes when ``reduction`` is ``auto``: as the papers write it.
#: L1 is seed 000's norm ||o^s - o^t||_1 (a sum); MSE and smooth-L1 are seed 001's mean errors.
AUTO_REDUCTION: dict[str, str] = {"l1": "sum", "mse": "mean", "smooth_l1": "mean"}


def logit_distance(student: torch.Tensor, teacher: torch.Tensor, loss: str, temperature: float = 1.0,
                   smooth_l1_beta: float = 1.0, reduction: str = "auto") -> torch.Tensor:
    """Distance between logits of shape (..., C), averaged over all leading positions.

    ``reduction`` says how the elementwise distances reduce over the C classes: ``sum`` (a norm, e.g. the
    L1 norm of seed 000's FT-KD), ``mean`` (1/C of it), or ``auto`` (:data:`AUTO_REDUCTION`: sum for ``l1``,
    mean for ``mse`` and ``smooth_l1``). ``kl`` is Hinton's KL(softmax(t/T) || softmax(s/T)) scaled by T^2 so
    gradients keep their size; it always sums over the classes.
    """
    s = student.float().reshape(-1, student.shape[-1])
    t = teacher.detach().float().reshape(-1, teacher.shape[-1])
    if loss == "kl":
        log_p_s = F.log_softmax(s / temperature, dim=-1)
        log_p_t = F.log_softmax(t / temperature, dim=-1)
        return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * temperature**2
    if loss == "mse":
        e = F.mse_loss(s, t, reduction="none")
    elif loss == "l1":
        e = F.l1_loss(s, t, reduction="none")
    elif loss == "smooth_l1":
        e = F.smooth_l1_loss(s, t, beta=smooth_l1_beta, reduction="none")
    else:
        raise ValueError(f"unknown logit loss '{loss}'")
    how = AUTO_REDUCTION[loss] if reduction == "auto" else reduction
    if how == "sum":
        return e.sum(-1).mean()
    if how == "mean":
        return e.mean()
    raise ValueError(f"unknown reduction '{reduction}'")


def num_classes_of(model: nn.Module) -> int | None:
    """The number of classes a classifier declares (``num_classes``) or its ``classifier`` layer gives."""
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    head = getattr(model, "classifier", None)
    return int(head.out_features) if isinstance(head, nn.Linear) else None


def resample_frames(logits: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor, frames: int) -> torch.Tensor:
    """Each utterance's ``lengths[i]`` teacher frames resampled linearly along time to ``target[i]`` frames,
    padded to ``frames`` (B, frames, V): per-frame KD between models of different frame rates."""
    out = logits.new_zeros((logits.shape[0], frames, logits.shape[-1]))
    for i, (n, m) in enumerate(zip(lengths.tolist(), target.tolist())):
        n, m = int(n), min(int(m), frames)
        if n <= 0 or m <= 0:
            continue
        row = logits[i, :n].transpose(0, 1)[None]  # (1, V, n)
        out[i, :m] = row[0].transpose(0, 1) if n == m else F.interpolate(
            row.float(), size=m, mode="linear", align_corners=False)[0].transpose(0, 1).to(logits.dtype)
    return out


def check_units(check: CheckContext, teacher: str, student: str, key: str) -> None:
    """Refuse a teacher whose output units differ from the student's: their logits cannot be compared.

    A model's units are those its family declares (an external teacher's vocabulary), else the data's tokens
    (what every model built on the data outputs)."""
    from compressor.core.teachers import model_units

    info = check.data_info()
    data_tokens = info.get("tokens")
    loaded = check.loaded
    try:
        t_units = model_units(check.registry, check.spec, loaded.model_args, teacher)
        s_units = model_units(check.registry, check.spec, loaded.model_args, student)
    except (UserError, ValueError):
        return  # the model's own check reports its files
    models = check.spec.all_models()
    if t_units == []:
        raise check.error(f"teacher '{teacher}' ({models[teacher].name}) gives no per-frame logits over output "
                          f"units (a Whisper gives encoder states and transcripts): distil its states with "
                          f"representation_kd, or its transcripts with sequence-level KD", key)
    t_units = t_units if t_units is not None else data_tokens
    s_units = s_units or data_tokens
    if t_units is None or s_units is None or list(t_units) == list(s_units):
        return
    diff = [u for u in t_units if u not in set(s_units)][:3] or [u for u in s_units if u not in set(t_units)][:3]
    raise check.error(
        f"teacher '{teacher}' ({models[teacher].name}) outputs {len(t_units)} units and the student '{student}' "
        f"{len(s_units)}, not the same ({', '.join(map(repr, diff)) or 'another order'}): logits over different "
        f"units cannot be compared; let the data adopt the teacher's vocabulary (data: tokenizer: "
        f"{{from_teacher: {teacher}}}) or distil the teacher's transcripts with sequence-level KD instead", key)


class LogitKD(Strategy):
    """Distil teacher logits into the student (KL/MSE/L1/smooth-L1) with a scheduled KD weight."""

    name = "logit_kd"

    class Args(Args):
        loss: Literal["kl", "mse", "l1", "smooth_l1"] = "kl"
        reduction: Literal["auto", "sum", "mean"] = Field(
            default="auto", description="over the classes: sum (a norm), mean (1/C of it), or auto = the papers' "
                                        "form (sum for l1 as seed 000's ||o^s - o^t||_1; mean for mse and "
                                        "smooth_l1 as seed 001's errors); kl always sums")
        temperature: float = Field(default=1.0, gt=0)
        smooth_l1_beta: float = Field(default=1.0, gt=0)
        weight: ScheduleArg = Field(default_factory=lambda: ScheduleArg.constant(1.0),
                                    description="beta_t (the KD weight): a number or any schedule")
        alpha: float | Literal["complement"] = Field(
            default=1.0, description="weight of the task loss: a number, or 'complement' for 1 - beta_t")
        teacher: str = "teacher"
        professor: str | None = None
        gamma: ScheduleArg = Field(default_factory=lambda: ScheduleArg(name="error_rate"),
                                   description="gamma, the professor's share (Eq. 4): a number or any schedule")
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
        align: Literal["refuse", "interpolate"] = Field(
            default="refuse", description="per-frame logits whose frame counts differ (a teacher at another "
                                          "frame rate): refuse, or resample each teacher sequence linearly along "
                                          "time to its student sequence's length (logit_lengths)")

    def __init__(self, args: Args) -> None:
        super().__init__(args)
        self.weight: Schedule = args.weight.build()  # schedules are validated and built by ScheduleArg
        self.gamma: Schedule | None = args.gamma.build() if args.professor else None
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
        for key in ("teacher", "professor"):
            name = getattr(args, key)
            if name is not None and student in names:
                check_units(check, name, student, key)
        if args.cache:
            check_cache(check, [m for m in (args.teacher, args.professor) if m is not None])

    # -- hooks --------------------------------------------------------------------------------------
    def _teacher_outputs(self, ctx: StageContext, name: str) -> TeacherOutputs:
        key = self.args.logits_key

        def compute(batch: dict[str, Any]) -> Targets:  # the forward other strategies of the step share
            out = ctx.forward_once(name, batch).outputs
            # per-frame logits travel with their valid lengths (cached cut to them, padded back per batch)
            return {key: (out[key].detach(), out.get("logit_lengths") if out[key].dim() > 2 else None)}

        reads = ctx.model_reads(name) if hasattr(ctx, "model_reads") else None
        signature: dict[str, Any] = {"plugin": self.name, "logits": key}
        source = getattr(ctx.model(name), "source_hash", None)  # an external teacher: the files it came from
        if source is not None:
            signature["source"] = source
        return TeacherOutputs(name, compute, cache=self.args.cache, batching=self.args.teacher_batching,
                              signature=signature, input_keys=reads, cache_dir=self.args.cache_dir)

    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        self.outputs = {}
        for name in (self.args.teacher, self.args.professor):
            if name is not None:
                self.outputs[name] = self._teacher_outputs(ctx, name)
                self.outputs[name].start(ctx)

    def _logits(self, ctx: StageContext, batch: dict[str, Any], name: str,
                student_lengths: torch.Tensor | None = None, frames: int | None = None) -> torch.Tensor:
        if name not in self.outputs:  # used without the stage's prepare hook (unit tests)
            self.outputs[name] = self._teacher_outputs(ctx, name)
        logits, lengths = self.outputs[name](ctx, batch)[self.args.logits_key]
        if lengths is None or student_lengths is None or frames is None:
            return logits
        if self.args.align == "interpolate":
            return resample_frames(logits, lengths, student_lengths, frames)
        if logits.shape[1] != frames:  # padded to another length (per-utterance or cached outputs)
            if not torch.equal(lengths.cpu(), student_lengths.cpu()):
                raise UserError(f"logit_kd: teacher '{name}' gives {lengths.tolist()} frames and the student "
                                f"{student_lengths.tolist()}: set align: interpolate to resample the teacher's "
                                f"logits along time to the student's frame rate")
            logits = logits[:, :frames] if logits.shape[1] > frames else F.pad(
                logits, (0, 0) * (logits.dim() - 2) + (0, frames - logits.shape[1]))
        return logits

    @hookimpl
    def compressor_loss_terms(self, ctx: StageContext, batch: dict[str, Any], outputs: dict[str, torch.Tensor],
                              losses: LossTerms) -> None:
        args = self.args
        beta = self.weight(ctx)
        alpha = 1.0 - beta if args.alpha == "complement" else float(args.alpha)
        ctx.log_scalar("kd_weight", beta)
        student = outputs[args.logits_key]
        lengths = outputs.get("logit_lengths") if student.dim() > 2 else None
        if args.align == "interpolate" and lengths is None:
            raise UserError(f"logit_kd align: interpolate needs the student's per-frame logit_lengths, which "
                            f"'{ctx.stage.forward_model}' does not give")
        frames = int(student.shape[1]) if student.dim() > 2 else None
        teacher = self._logits(ctx, batch, args.teacher, lengths, frames)
        if teacher.shape != student.shape:
            hint = (" (per-frame logits at another frame rate: set align: interpolate to resample the teacher's "
                    "along time)" if teacher.dim() == 3 and teacher.shape[::2] == student.shape[::2] else "")
            raise ValueError(f"teacher logits {tuple(teacher.shape)} and student logits "
                             f"{tuple(student.shape)} differ in shape{hint}")

        def distance(target: torch.Tensor) -> torch.Tensor:
            return logit_distance(student, target, args.loss, args.temperature, args.smooth_l1_beta,
                                  args.reduction)

        if args.professor is None:
            kd = distance(teacher)
        else:
            assert self.gamma is not None
            gamma = float(self.gamma(ctx))
            ctx.log_scalar("kd_gamma", gamma)
            professor = self._logits(ctx, batch, args.professor, lengths, frames)
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
        from compressor.core.teachers import offload_cached_teacher

        for name, out in self.outputs.items():
            out.flush()
            if self.args.cache:  # every training utterance's outputs are cached: free an external teacher
                offload_cached_teacher(ctx, name)

    @hookimpl
    def compressor_finalize_student(self, ctx: StageContext) -> None:
        for out in self.outputs.values():
            out.flush()


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", LogitKD.name, LogitKD)
