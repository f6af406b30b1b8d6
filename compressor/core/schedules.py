"""Scalar schedules: a value that changes over a stage (a KD weight, a replacing rate).

A spec names a schedule by key wherever a plugin takes one::

    weight: {name: exp_decay}                              # beta_t = exp(1 - t), seed 001 Eq. 5b
    replacing_rate: {name: log_curriculum, base: 40, b: 1.2}   # p_T = min(log_B(k T + b), 1), seed 002 Eq. 5

``t`` counts epochs from 1 (``unit: epoch``) or optimizer steps from 0 (``unit: step``). Third parties add
schedules with ``registry.add("schedule", name, MySchedule)`` where ``MySchedule(args)`` is callable on a
:class:`Clock` (the stage context satisfies it).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, model_validator

from compressor.core.errors import did_you_mean
from compressor.core.registry import Args, Registry


class Clock(Protocol):
    step: int
    epoch: int
    total_steps: int
    total_epochs: int
    steps_per_epoch: int
    batch_error: float | None


class Schedule:
    """Base class: ``schedule(clock) -> float``."""

    name: ClassVar[str] = ""
    Args: ClassVar[type[Args]]

    def __init__(self, args: Args) -> None:
        self.args = args

    def __call__(self, clock: Clock) -> float:
        return self.value(self.t(clock), self.horizon(clock), clock)

    def value(self, t: float, horizon: float, clock: Clock) -> float:
        raise NotImplementedError

    def t(self, clock: Clock) -> float:
        return float(clock.epoch + 1) if getattr(self.args, "unit", "step") == "epoch" else float(clock.step)

    def horizon(self, clock: Clock) -> float:
        """T of the stage in this schedule's unit (epochs, or optimizer steps)."""
        if getattr(self.args, "unit", "step") == "epoch":
            return float(clock.total_epochs)
        return float(clock.total_steps)

    def last_t(self, horizon: float) -> float:
        """The value of t at the stage's last step: epochs count 1..T, steps 0..T-1."""
        return horizon if getattr(self.args, "unit", "step") == "epoch" else max(horizon - 1.0, 1.0)

    def final_value(self, total_steps: int, total_epochs: int) -> float:
        """The value at the last step of a stage of that size (used to validate replacing rates)."""
        last = _FixedClock(step=max(0, total_steps - 1), epoch=max(0, total_epochs - 1),
                           total_steps=total_steps, total_epochs=total_epochs,
                           steps_per_epoch=max(1, total_steps // max(1, total_epochs)), batch_error=None)
        return self(last)


class ScheduleArg(BaseModel):
    """A plugin argument that takes any registered schedule, typed: ``weight: ScheduleArg``.

    In a spec it is ``{name: linear, start: 0.0, end: 1.0}`` (any schedule with its arguments) or a plain
    number (a ``constant`` schedule). The schedule's name and arguments are validated with the spec, before
    any work (errors name the key path and the closest schedule name). In a hook, ``self.args.weight(ctx)``
    is the current value; ``final_value(steps, epochs)`` the value at the last step of a stage that size::

        class Args(Args):
            weight: ScheduleArg = Field(default_factory=lambda: ScheduleArg.constant(1.0))

        @hookimpl
        def compressor_loss_terms(self, ctx, batch, outputs, losses):
            losses.add("my_kd", value, self.args.weight(ctx))
    """

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="a registered schedule (compressor plugins lists them)")
    _schedule: Schedule | None = PrivateAttr(default=None)

    @classmethod
    def constant(cls, value: float) -> ScheduleArg:
        """A constant schedule (for defaults)."""
        return cls(name="constant", value=value)

    @model_validator(mode="before")
    @classmethod
    def _number_is_constant(cls, data: object) -> object:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return {"name": "constant", "value": float(data)}
        return data

    @model_validator(mode="after")
    def _valid_schedule(self, info: ValidationInfo) -> ScheduleArg:
        self._schedule = None
        self.build((info.context or {}).get("registry"))
        return self

    @property
    def arguments(self) -> dict[str, object]:
        """The schedule's own arguments (everything but ``name``)."""
        return dict(self.model_extra or {})

    def build(self, registry: Registry | None = None) -> Schedule:
        """The schedule object (built once; ``ValueError`` naming what is wrong otherwise).

        The schedule is looked up in ``registry``; without one (an argument built in code rather than validated
        with a spec), among the built-in schedules."""
        if self._schedule is None:
            if registry is None:
                registry = builtin_schedules()
            if not registry.has("schedule", self.name):
                names = registry.names("schedule")
                raise ValueError(f"unknown schedule '{self.name}'{did_you_mean(self.name, names)}")
            entry = registry.get("schedule", self.name)
            try:
                args = entry.args.model_validate(self.arguments)
            except ValidationError as e:
                problems = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or self.name}: {err['msg']}"
                                     for err in e.errors())
                raise ValueError(f"schedule '{self.name}': {problems}") from None
            self._schedule = entry.factory(args)
        return self._schedule

    def __call__(self, clock: Clock) -> float:
        """The value now (``clock`` is the stage context)."""
        return float(self.build()(clock))

    def final_value(self, total_steps: int, total_epochs: int = 1) -> float:
        """The value at the last step of a stage of ``total_steps`` optimizer steps."""
        return float(self.build().final_value(total_steps, total_epochs))


class _FixedClock:
    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


class UnitArgs(Args):
    unit: Literal["step", "epoch"] = "step"


class Constant(Schedule):
    """A fixed value (seed 001's beta_t = 0.1 / 0.5; seed 002's constant replacing rate p = 0.75)."""

    name = "constant"

    class Args(UnitArgs):
        value: float = 1.0

    def value(self, t: float, horizon: float, clock: Clock) -> float:
        return self.args.value


class Linear(Schedule):
    """From ``start`` to ``end`` linearly over ``duration`` units (default: the whole stage), then ``end``.

    As a replacing-rate scheduler this is BERT-of-Theseus's ``p = min(1, k t + b)`` with b = start and
    k = (end - start) / duration.
    """

    name = "linear"

    class Args(UnitArgs):
        start: float = 0.5
        end: float = 1.0
        duration: float | None = Field(default=None, gt=0)

    def value(self, t: float, horizon: float, clock: Clock) -> float:
        t0 = t - 1 if self.args.unit == "epoch" else t  # 0 at the stage's first step in either unit
        duration = self.args.duration or max(horizon - 1.0, 1.0)  # default: reach `end` at the last step
        frac = min(max(t0 / duration, 0.0), 1.0)
        return self.args.start + (self.args.end - self.args.start) * frac


class ExpDecay(Schedule):
    """beta_t = scale * exp(1 - t): the teacher's influence fades exponentially (seed 001, Eq. 5b)."""

    name = "exp_decay"

    class Args(Args):
        unit: Literal["step", "epoch"] = "epoch"
        scale: float = Field(default=1.0, ge=0)

    def t(self, clock: Clock) -> float:
        if self.args.unit == "epoch":
            return float(clock.epoch + 1)
        return 1.0 + clock.step / max(1, clock.steps_per_epoch)  # continuous epochs

    def value(self, t: float, horizon: float, clock: Clock) -> float:
        return self.args.scale * math.exp(1.0 - t)


class Triangular(Schedule):
    """beta_t = peak * max(0, 1 - |t - mu| / (0.5 mu)), mu = T / 2 (seed 001, Eq. 5c; peak 0.1 there)."""

    name = "triangular"

    class Args(Args):
        unit: Literal["step", "epoch"] = "epoch"
        peak: float = Field(default=0.1, ge=0)

    def value(self, t: float, horizon: float, clock: Clock) -> float:
        mu = horizon / 2.0
        if mu <= 0:
            return 0.0
        return self.args.peak * max(0.0, -abs(t - mu) / (0.5 * mu) + 1.0)


class ErrorRate(Schedule):
    """beta_t = the current training batch's error rate (seed 001, Eq. 5a); ``initial`` before any batch."""

    name = "error_rate"

    class Args(Args):
        initial: float = Field(default=1.0, ge=0, le=1)
        scale: float = Field(default=1.0, ge=0)

    def __call__(self, clock: Clock) -> float:
        err = clock.batch_error
        return self.args.scale * (self.args.initial if err is None else float(err))


class LogCurriculum(Schedule):
    """p_T = min(log_B(k T + b), 1.0), T the training step (seed 002, Eq. 5; B = 40 was best there).

    ``log_B(b)`` is the basic replacing rate at T = 0. Give ``k`` directly, or ``reach_at`` (the fraction of
    the stage at which p reaches 1; 1 = at its last step) and k = (B - b) / (reach_at * T_last) is derived from
    the stage length.
    """

    name = "log_curriculum"

    class Args(UnitArgs):
        base: float = Field(default=40.0, gt=1)
        b: float = Field(default=2.0, ge=1)
        k: float | None = Field(default=None, gt=0)
        reach_at: float = Field(default=0.75, gt=0, le=1)

        @model_validator(mode="after")
        def _b_below_base(self) -> LogCurriculum.Args:
            if self.b >= self.base:
                raise ValueError(f"b ({self.b}) must be below base ({self.base}): otherwise p_0 = 1 from the start")
            return self

    def slope(self, horizon: float) -> float:
        if self.args.k is not None:
            return self.args.k
        return (self.args.base - self.args.b) / max(1e-9, self.args.reach_at * self.last_t(horizon))

    def value(self, t: float, horizon: float, clock: Clock) -> float:
        x = self.slope(horizon) * t + self.args.b
        return min(math.log(x) / math.log(self.args.base), 1.0)


class Exponential(Schedule):
    """p_T = min(p_0 * exp(k T), 1.0): slow start, fast finish (the convex counterpart of log curriculum).

    Give ``k``, or ``reach_at`` (fraction of the stage at which p reaches 1): k = ln(1 / p_0) / (reach_at T_last).
    """

    name = "exponential"

    class Args(UnitArgs):
        p0: float = Field(default=0.1, gt=0, le=1)
        k: float | None = Field(default=None, gt=0)
        reach_at: float = Field(default=0.75, gt=0, le=1)

    def value(self, t: float, horizon: float, clock: Clock) -> float:
        k = self.args.k if self.args.k is not None else math.log(1.0 / self.args.p0) / max(
            1e-9, self.args.reach_at * self.last_t(horizon))
        return min(self.args.p0 * math.exp(k * t), 1.0)


BUILTIN_SCHEDULES: tuple[type[Schedule], ...] = (
    Constant, Linear, ExpDecay, Triangular, ErrorRate, LogCurriculum, Exponential,
)


def builtin_schedules() -> Registry:
    """A registry holding only the built-in schedules (for a :class:`ScheduleArg` built without a spec's)."""
    registry = Registry()
    registry.current_package = "compressor"
    for schedule in BUILTIN_SCHEDULES:
        registry.add("schedule", schedule.name, schedule)
    return registry
