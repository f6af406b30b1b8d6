"""Representation knowledge distillation: intermediate representations of a student learn a teacher's.

For each *pair* of points (one in the teacher, one in the student)::

    L_pair = D(P(pool(h_student)), pool(h_teacher))        L = alpha * L_task + sum_pairs w_pair(t) * L_pair

* A **point** is a key of the model's output dict (``{output: hidden}``) or the output of a named module
  (``{module: encoder.layers.3}``; ``index`` picks an element of a tuple output, e.g. 0 of an LSTM's
  ``(output, state)``), in ``layout`` btc (batch, time, channels; default), bct (conv outputs) or tbc.
* **Pooling** per point over the real steps only: ``none`` (frame level), ``cls`` (first position), ``mean``,
  ``max``. So a text teacher's sentence vector meets a speech student's utterance vector: seed 000's PT-KD
  ``|| h_[CLS]^s - h_[CLS]^t ||_1`` is ``teacher: {output: cls}``, ``student: {output: cls}``, ``loss: l1``,
  ``reduction: sum``. Valid lengths follow :mod:`compressor.core.sequences` (``lengths: auto | none | <batch key>``).
* Frame-level pairs of different lengths: ``align: interpolate`` resamples each teacher sequence linearly to
  its student sequence's length; ``align: refuse`` (default) stops with a message naming both lengths.
* **Projection** ``P`` (student width -> teacher width): ``auto`` (a linear map when the widths differ, none
  when equal), ``linear``, ``mlp`` (linear-GELU-linear), ``none`` (refused when the widths differ). Projections
  are trained with the student, saved in checkpoints (model ``<wrapper>`` during the stage), and dropped when
  the stage ends, so they never reach the exported student.
* **Losses** ``D``: ``l1``, ``mse``, ``smooth_l1``, ``cosine`` (1 - cos). ``reduction: mean`` averages over
  positions and channels; ``sum`` sums over channels and averages over positions (vector norms such as
  seed 000's L1). Every pair has its own ``weight`` (a number or any registered schedule) and is logged as
  ``loss/repr_<name>``.

Each model reads its own inputs from the batch (a text teacher reads ``text``, a speech student ``features``).
A frozen teacher runs without gradients; a teacher listed under the stage's ``train`` gets them. ``cache``
(see :mod:`compressor.teaching.teacher_cache`) runs a frozen teacher once per utterance and reuses its pooled vectors
or frame sequences.

Spec (seed 000 PT-KD)::

    plugins:
      - name: representation_kd
        teacher: teacher
        pairs:
          - {name: cls, teacher: {output: cls}, student: {output: cls}, loss: l1, reduction: sum}
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from compressor.core.context import StageContext
from compressor.core.errors import UserError, did_you_mean
from compressor.core.forward_hooks import ForwardHooks
from compressor.core.hookspecs import hookimpl
from compressor.core.introspect import in_out_dims
from compressor.core.losses import LossTerms
from compressor.core.registry import Args, Registry
from compressor.core.schedules import ScheduleArg
from compressor.core.sequences import (
    LengthsUnknown,
    declares_lengths,
    length_mask,
    module_output,
    pool,
    probe,
    sample_batch,
    to_btc,
    valid_lengths,
)
from compressor.core.strategy import Strategy
from compressor.spec import CheckContext
from compressor.teaching.teacher_cache import Targets, TeacherOutputs, check_cache


class Point(BaseModel):
    """Where a representation is taken: an output key or a module's output, how it is laid out and pooled."""

    model_config = ConfigDict(extra="forbid")
    output: str | None = Field(default=None, description="key of the model's output dict")
    module: str | None = Field(default=None, description="named module whose output is taken (forward hook)")
    index: int | None = Field(default=None, ge=0, description="element of a tuple output (an LSTM's: 0)")
    pooling: Literal["none", "cls", "mean", "max"] = "none"
    layout: Literal["btc", "bct", "tbc"] = "btc"
    lengths: str = Field(default="auto", description="auto | none | a batch key holding the lengths")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"output": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> Point:
        if (self.output is None) == (self.module is None):
            raise ValueError("a point names exactly one of 'output' (an output key) or 'module' (a module name)")
        return self

    def needs_lengths(self) -> bool:
        return self.pooling in ("none", "mean", "max") and self.lengths != "none"


class Pair(BaseModel):
    """One teacher point distilled into one student point."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$", description="logged as loss/repr_<name>")
    teacher: Point
    student: Point
    loss: Literal["l1", "mse", "smooth_l1", "cosine"] = "l1"
    reduction: Literal["mean", "sum"] = Field(default="mean", description="over channels: mean, or sum (a "
                                              "vector norm); positions are always averaged")
    smooth_l1_beta: float = Field(default=1.0, gt=0)
    weight: ScheduleArg = Field(default_factory=lambda: ScheduleArg.constant(1.0),
                                description="a number or any registered schedule ({name: ...})")
    projection: Literal["auto", "linear", "mlp", "none"] = "auto"
    align: Literal["refuse", "interpolate"] = Field(
        default="refuse", description="frame-level sequences of different lengths: resample the teacher's to "
                                      "the student's length, or stop")


def representation_distance(s: torch.Tensor, t: torch.Tensor, loss: str, reduction: str = "mean",
                            mask: torch.Tensor | None = None, smooth_l1_beta: float = 1.0) -> torch.Tensor:
    """D between (..., D) tensors, averaged over the positions where ``mask`` (shape ``s.shape[:-1]``) holds."""
    if s.shape != t.shape:
        raise ValueError(f"student {tuple(s.shape)} and teacher {tuple(t.shape)} representations differ in shape")
    if mask is not None and tuple(mask.shape) != tuple(s.shape[:-1]):
        raise ValueError(f"mask {tuple(mask.shape)} does not cover the positions {tuple(s.shape[:-1])}")
    s, t = s.float(), t.float()
    if loss == "cosine":
        per_position = 1.0 - F.cosine_similarity(s, t, dim=-1, eps=1e-8)
    else:
        if loss == "l1":
            e = (s - t).abs()
        elif loss == "mse":
            e = (s - t) ** 2
        elif loss == "smooth_l1":
            e = F.smooth_l1_loss(s, t, reduction="none", beta=smooth_l1_beta)
        else:
            raise ValueError(f"unknown representation loss '{loss}'")
        per_position = e.sum(-1) if reduction == "sum" else e.mean(-1)
    if mask is None:
        return per_position.mean()
    m = mask.to(per_position.dtype)
    return (per_position * m).sum() / m.sum().clamp_min(1.0)


def interpolate_to(t: torch.Tensor, t_lengths: torch.Tensor, s_lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Each teacher sequence t[i, :t_len] resampled linearly to s_len frames, padded to ``steps``."""
    out = t.new_zeros((t.shape[0], steps, t.shape[-1]))
    for i in range(t.shape[0]):
        lt, ls = int(t_lengths[i]), int(s_lengths[i])
        if lt == 0 or ls == 0:
            continue
        seq = t[i, :lt].transpose(0, 1)[None]
        out[i, :ls] = F.interpolate(seq, size=ls, mode="linear", align_corners=False)[0].transpose(0, 1)
    return out


def _static_width(model: nn.Module, point: Point) -> int | None:
    """The channel width of a point when the model's structure tells it (else None: learnt at stage start)."""
    if point.output is not None:
        dims = getattr(model, "output_dims", None)
        return dims.get(point.output) if isinstance(dims, dict) else None
    module = dict(model.named_modules()).get(point.module or "")
    return None if module is None else in_out_dims(module)[1]


class Projection(nn.Module):
    """Student width -> teacher width: a linear map or a small MLP (linear, GELU, linear)."""

    def __init__(self, d_in: int, d_out: int, kind: str, hidden: int | None = None) -> None:
        super().__init__()
        if kind == "mlp":
            h = hidden or d_out
            self.net: nn.Module = nn.Sequential(nn.Linear(d_in, h), nn.GELU(), nn.Linear(h, d_out))
        else:
            self.net = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class RepresentationKD(Strategy):
    """Distances between teacher and student representations (pooled or frame level), learned projections."""

    name = "representation_kd"

    class Args(Args):
        teacher: str = "teacher"
        student: str | None = Field(default=None, description="default: the stage's forward model")
        pairs: list[Pair] = Field(min_length=1, description=(
            "[{name, teacher: POINT, student: POINT, loss: l1|mse|smooth_l1|cosine, reduction: mean|sum, weight: "
            "number|schedule, projection: auto|linear|mlp|none, align: refuse|interpolate}], POINT = {output: KEY "
            "| module: NAME, index, pooling: none|cls|mean|max, layout: btc|bct|tbc, lengths: auto|none|KEY}"))
        mlp_hidden: int | None = Field(default=None, ge=1, description="hidden width of mlp projections "
                                       "(default: the teacher's width)")
        alpha: float | None = Field(default=None, ge=0, description="weight of the task loss (default: "
                                    "unchanged)")
        wrapper: str = Field(default="representation_kd", description="name of the projections in ctx.models "
                             "(checkpointed, dropped at the end of the stage)")
        cache: bool = Field(default=False, description="run a frozen teacher once per utterance and reuse "
                                                       "its representations")
        cache_dir: str | None = None
        teacher_batching: Literal["batch", "utterance"] = "batch"

        @model_validator(mode="after")
        def _names(self) -> RepresentationKD.Args:
            seen: set[str] = set()
            for i, pair in enumerate(self.pairs):
                pair.name = pair.name or f"pair{i}"
                if pair.name in seen:
                    raise ValueError(f"two pairs are named '{pair.name}'")
                seen.add(pair.name)
            return self

    def __init__(self, args: Args) -> None:
        super().__init__(args)
        self.projections: nn.ModuleDict | None = None
        self.teacher_out: TeacherOutputs | None = None
        self._hooks: ForwardHooks | None = None
        self._captured: dict[str, dict[str, Any]] = {"teacher": {}, "student": {}}
        self._ctx: StageContext | None = None

    # -- validation ---------------------------------------------------------------------------------
    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        names = check.model_names()
        student = args.student or check.stage.forward_model
        for key, name in (("teacher", args.teacher), ("student", student)):
            check.require_model(name, key)
        if args.teacher == student:
            raise check.error("teacher and student must be different models", "teacher")
        if args.wrapper in names:
            raise check.error(f"wrapper name '{args.wrapper}' is already a model's name", "wrapper")
        models = {"teacher": check.try_build_model(args.teacher), "student": check.try_build_model(student)}
        keys = check.data_info().get("batch_keys")
        if models["teacher"] is None or models["student"] is None:  # checked when the run builds them
            models = {}
        for i, pair in enumerate(args.pairs if models else []):
            for who in ("teacher", "student"):
                point: Point = getattr(pair, who)
                model = models[who]
                where = ("pairs", i, who)
                if point.module is not None:
                    modules = [n for n, _ in model.named_modules() if n]
                    if point.module not in modules:
                        raise check.error(f"no module '{point.module}' in the {who}"
                                          f"{did_you_mean(point.module, modules)}", *where, "module")
                if point.needs_lengths():
                    if point.lengths not in ("auto", "none") and keys is not None and point.lengths not in keys:
                        raise check.error(f"lengths '{point.lengths}' is not a key of this stage's batches "
                                          f"({', '.join(keys)})", *where, "lengths")
                    if (point.lengths == "auto" and not declares_lengths(model) and keys is not None
                            and "feature_lengths" not in keys):
                        raise check.error(f"pooling '{point.pooling}' needs the valid lengths of the {who}'s "
                                          "sequences: the model declares no sequence_lengths and the batches "
                                          "carry no feature_lengths (set lengths: none for unpadded inputs, or "
                                          "lengths: <batch key>)", *where, "pooling")
            wt, ws = _static_width(models["teacher"], pair.teacher), _static_width(models["student"], pair.student)
            if pair.projection == "none" and wt is not None and ws is not None and wt != ws:
                raise check.error(f"projection: none, but the student's width {ws} differs from the teacher's "
                                  f"{wt} (use projection: linear or mlp)", "pairs", i, "projection")
        if args.cache:
            check_cache(check, [args.teacher])

    # -- reading points -----------------------------------------------------------------------------
    def _read(self, who: str, point: Point, model: nn.Module, outputs: dict[str, Any], batch: dict[str, Any]
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The point as (B, T, D) + lengths (frame level) or (B, D) + None (pooled)."""
        if point.output is not None:
            if point.output not in outputs:
                raise UserError(f"representation_kd: the {who} returns no output '{point.output}' (outputs: "
                                f"{', '.join(outputs)})")
            x = outputs[point.output]
        else:
            if point.module not in self._captured[who]:
                raise UserError(f"representation_kd: the {who}'s module '{point.module}' did not run in its "
                                f"forward pass")
            x = module_output(self._captured[who][point.module], point.index)
        if x.dim() == 2:  # already one vector per utterance
            return x, None
        x = to_btc(x, point.layout)
        try:
            lengths = valid_lengths(model, batch, int(x.shape[1]), point.lengths) if point.needs_lengths() else None
        except LengthsUnknown as e:
            raise UserError(f"representation_kd: the valid lengths of the {who}'s point are unknown: {e}") from None
        if point.pooling == "none":
            return x, lengths
        return pool(x, lengths, point.pooling), None

    # -- hooks --------------------------------------------------------------------------------------
    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        args = self.args
        self._ctx = ctx
        models = {"teacher": ctx.model(args.teacher), "student": ctx.model(self.student_name(ctx))}
        modules = {who: list(dict.fromkeys(getattr(p, who).module for p in args.pairs
                                           if getattr(p, who).module is not None)) for who in models}
        # One probing forward of each model on the shortest and the longest training utterance (eval mode, no
        # gradients, random streams untouched): the widths of the points and the lengths of their sequences.
        batch = sample_batch(ctx.data, ctx.device)
        outs, caps = {}, {}
        for who, model in models.items():
            outs[who], caps[who] = probe(model, batch, modules[who], forward=ctx.task.forward)
        projections = nn.ModuleDict()
        self._captured = caps
        for pair in args.pairs:
            with torch.no_grad():
                t, _ = self._read("teacher", pair.teacher, models["teacher"], outs["teacher"], batch)
                s, _ = self._read("student", pair.student, models["student"], outs["student"], batch)
            if t.dim() != s.dim():
                frame, vector = ("teacher", "student") if t.dim() == 3 else ("student", "teacher")
                raise UserError(f"representation_kd pair '{pair.name}': the {frame}'s point is a sequence (frame "
                                f"level) and the {vector}'s one vector per utterance: pool the {frame}'s point "
                                f"(pooling: cls, mean or max)")
            dt, ds = int(t.shape[-1]), int(s.shape[-1])
            kind = pair.projection
            if kind == "auto":
                kind = "none" if dt == ds else "linear"
            if kind == "none" and dt != ds:
                raise UserError(f"representation_kd pair '{pair.name}': projection: none, but the student's width "
                                f"{ds} differs from the teacher's {dt}")
            if t.dim() == 3 and s.dim() == 3 and pair.align == "refuse" and t.shape[1] != s.shape[1]:
                raise UserError(f"representation_kd pair '{pair.name}': the teacher's sequence has {t.shape[1]} "
                                f"steps and the student's {s.shape[1]} for the same utterances (set align: "
                                f"interpolate to resample the teacher's to the student's length)")
            if kind != "none":
                projections[pair.name] = Projection(ds, dt, kind, args.mlp_hidden)
        # The student's points in its training forwards (the teacher's come with its shared forward); the
        # student also runs for evaluation: those forwards are not captured.
        self._hooks = ForwardHooks(models["student"])
        student_points = self._hooks.capture(modules["student"], when=lambda: self._ctx is not None and
                                             self._ctx.training)
        self._captured = {"teacher": {}, "student": student_points}
        self.projections = projections.to(ctx.device)
        if len(projections):
            ctx.models[args.wrapper] = self.projections
        ctx.watch(args.teacher, [p.teacher.module for p in args.pairs if p.teacher.module is not None])
        self.teacher_out = TeacherOutputs(
            args.teacher, self._teacher_targets, cache=args.cache, batching=args.teacher_batching,
            signature={"plugin": self.name, "pairs": [p.teacher.model_dump() for p in args.pairs]},
            input_keys=ctx.model_reads(args.teacher), cache_dir=args.cache_dir)
        self.teacher_out.start(ctx)

    def student_name(self, ctx: StageContext) -> str:
        return self.args.student or ctx.stage.forward_model

    def _teacher_targets(self, batch: dict[str, Any]) -> Targets:
        assert self._ctx is not None
        ctx = self._ctx
        teacher = ctx.model(self.args.teacher)
        frozen = not any(p.requires_grad for p in teacher.parameters())
        shared = ctx.forward_once(self.args.teacher, batch)  # one teacher forward per step for all strategies
        self._captured["teacher"] = dict(shared.modules)
        with torch.set_grad_enabled(not frozen and torch.is_grad_enabled()):
            targets = {p.name: self._read("teacher", p.teacher, teacher, shared.outputs, batch)
                       for p in self.args.pairs}
        self._captured["teacher"] = {}
        return targets

    @hookimpl
    def compressor_loss_terms(self, ctx: StageContext, batch: dict[str, Any], outputs: dict[str, torch.Tensor],
                              losses: LossTerms) -> None:
        assert self.teacher_out is not None
        self._ctx = ctx
        student_name = self.student_name(ctx)
        student = ctx.model(student_name)
        if student_name != ctx.forward_model:
            outputs = ctx.task.forward(student, batch)
        targets = self.teacher_out(ctx, batch)
        for pair in self.args.pairs:
            s, s_len = self._read("student", pair.student, student, outputs, batch)
            t, t_len = targets[pair.name]
            if self.projections is not None and pair.name in self.projections:
                s = self.projections[pair.name](s)
            mask = None
            if s.dim() == 3:  # frame level (one vector per utterance otherwise)
                steps = s.shape[1]
                if s_len is None:
                    s_len = torch.full((s.shape[0],), steps, dtype=torch.int64, device=s.device)
                if t_len is None:
                    t_len = torch.full((t.shape[0],), t.shape[1], dtype=torch.int64, device=t.device)
                same = t.shape[1] >= steps and bool(torch.equal(t_len.to(s_len.device), s_len))
                if same:
                    t = t[:, :steps]
                elif pair.align == "interpolate":
                    t = interpolate_to(t, t_len, s_len, steps)
                else:
                    raise ValueError(f"pair '{pair.name}': teacher sequences of {t_len.tolist()} steps meet "
                                     f"student sequences of {s_len.tolist()} (set align: interpolate)")
                mask = length_mask(s_len, steps)
            value = representation_distance(s, t.to(s.device), pair.loss, pair.reduction, mask,
                                             pair.smooth_l1_beta)
            losses.add(f"repr_{pair.name}", value, pair.weight(ctx))
        if self.args.alpha is not None:
            losses.set_weight("task", self.args.alpha)
        self._captured["student"].clear()
        if self.args.cache:
            ctx.log_scalar("teacher_cache_hits", self.teacher_out.hit_rate())

    @hookimpl
    def compressor_epoch_end(self, ctx: StageContext) -> None:
        if self.teacher_out is not None:
            self.teacher_out.flush()
            if self.args.cache:  # every training utterance's outputs are cached: free an external teacher
                from compressor.core.teachers import offload_cached_teacher

                offload_cached_teacher(ctx, self.args.teacher)

    @hookimpl
    def compressor_finalize_student(self, ctx: StageContext) -> None:
        if self.teacher_out is not None:
            self.teacher_out.flush()
        if self._hooks is not None:
            self._hooks.remove()
        self._hooks = None
        ctx.models.pop(self.args.wrapper, None)
        self.projections = None
        self._ctx = None


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", RepresentationKD.name, RepresentationKD)
