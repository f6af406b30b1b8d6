"""The spec's schema: pydantic models of every key of a spec file (docs/specs.md describes them)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from compressor.core.limits import MAX_EPOCHS, MAX_NAME_LENGTH, MAX_STAGE_STEPS
from compressor.core.registry import Args

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

DEFAULT_SPLITS = ("train", "valid", "test")


def safe_name(value: str) -> str:
    """A name that is one safe path component (it names a run, checkpoint or weights file)."""
    if not _SAFE_NAME.match(value) or len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"a name must be 1 to {MAX_NAME_LENGTH} letters, digits, '_', '.' or '-' not starting "
                         f"with '.' or '-' (it becomes a file or directory name; pattern {_SAFE_NAME.pattern})")
    return value


class InitFrom(Args):
    """Where a model's initial weights come from (exactly one of ``run``, ``checkpoint``, ``spec``)."""

    run: str | None = Field(default=None, description="a finished run directory (its final/<model>.pt)")
    checkpoint: str | None = Field(default=None, description="a state-dict file or an engine checkpoint")
    spec: str | None = Field(default=None, description="a pre-training spec: its finished run in this spec's "
                                                       "output_dir, run first when there is none")
    set: list[str] = Field(default_factory=list, description="--set overrides for 'spec'")
    model: str | None = Field(default=None, description="the source model (default: the same name)")
    include: list[str] = Field(default_factory=list, description="glob patterns over state keys (default: all)")
    exclude: list[str] = Field(default_factory=list, description="glob patterns over state keys to leave out")

    @model_validator(mode="after")
    def _one_source(self) -> InitFrom:
        given = [k for k in ("run", "checkpoint", "spec") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of 'run', 'checkpoint' or 'spec'"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.set and not self.spec:
            raise ValueError("'set' overrides apply to a 'spec' source only")
        return self


class Ref(BaseModel):
    """A component named by key, its arguments flat beside the name: ``{name: X, arg: 1}``."""

    model_config = ConfigDict(extra="allow")
    name: str

    def args(self, reserved: tuple[str, ...] = ()) -> dict[str, Any]:
        return {k: v for k, v in (self.model_extra or {}).items() if k not in reserved}


class ModelSpec(Ref):
    """A model: registry ``name``, its arguments, and optionally ``checkpoint`` (all its weights, exactly) or
    ``init_from`` (the weights that match by name and shape, see :mod:`compressor.run.init_from`)."""

    checkpoint: str | None = None
    init_from: InitFrom | None = None


class OptimizerRef(Ref):
    """A registered optimizer (``compressor plugins`` lists them) and its arguments; ``lr`` is the base LR."""

    name: str = "adamw"


class LRScheduleRef(Ref):
    """A registered learning-rate schedule (warmup, then decay) and its arguments."""

    name: str = "constant"


class EvalSpec(Args):
    every: int | Literal["epoch", "never"] = "epoch"
    split: str = "valid"
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    max_batches: int | None = Field(default=None, ge=1)

    @field_validator("every")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be 'epoch', 'never' or a positive number of steps")
        return v


class StageSpec(Args):
    """One training stage."""

    name: str
    enabled: bool = Field(default=True, description="false skips the stage (an ablation as a --set)")
    train: list[str] = Field(min_length=1)
    frozen: list[str] = Field(default_factory=list)
    forward: str | None = None
    plugins: list[Ref] = Field(default_factory=list)
    optimizer: OptimizerRef = Field(default_factory=OptimizerRef)
    lr_schedule: LRScheduleRef = Field(default_factory=LRScheduleRef)
    epochs: int | None = Field(default=None, ge=1, le=MAX_EPOCHS)
    steps: int | None = Field(default=None, ge=1, le=MAX_STAGE_STEPS)
    batch_size: int = Field(default=16, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    grad_clip: float | None = Field(default=None, gt=0)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    handoff: Literal["best", "last"] = "best"
    checkpoint_every: int | None = Field(default=None, ge=1)
    task: Ref | None = Field(default=None, description="this stage's task (default: the spec's), e.g. "
                             "{name: ctc} to pre-train an acoustic module of a classifier")
    data: Ref | None = Field(default=None, description="this stage's data (default: the spec's); models are "
                             "built from the spec's data, so keep alphabets and feature dims compatible")

    _name = field_validator("name")(safe_name)

    @model_validator(mode="after")
    def _budget(self) -> StageSpec:
        if self.epochs is None and self.steps is None:
            raise ValueError("a stage needs 'epochs' or 'steps' (or both: steps caps the epochs)")
        return self

    @property
    def forward_model(self) -> str:
        return self.forward or self.train[0]


class TrainerSpec(Args):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    num_workers: int = Field(default=0, ge=0)
    threads: int | None = Field(default=None, ge=1)
    log_every: int = Field(default=10, ge=1)
    progress_bar: bool = True
    deterministic: bool = True
    find_unused_parameters: bool | Literal["auto"] = "auto"  # auto: when a plugin trains through a wrapper
    tracking: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=lambda: ["tensorboard"],
        description="experiment trackers the spec, metrics and plots go to (wandb: the optional extra; "
                    "WANDB_MODE=offline works without network)")


class EvalSetSpec(Args):
    """A named evaluation set: a split of the run's data, or of another dataset (``data``)."""

    data: Ref | None = None
    split: str = "test"


class ReferenceResult(Args):
    """A result measured elsewhere that a model of this run is to be read against (shown in summary.md),
    e.g. what the same student reached trained alone in a benchmark."""

    model: str = Field(default="student", description="the model of this run it stands beside")
    label: str = Field(min_length=1, max_length=200, description="what it is, e.g. 'student trained alone'")
    metrics: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(
        min_length=1, description="final-evaluation keys, e.g. {test/wer: 0.41}")
    std: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict, description="their standard deviations (finite, >= 0), when known")
    source: str = Field(default="", max_length=300, description="where it was measured (a results file)")


class EvaluateSpec(Args):
    split: str = "test"
    extra_splits: list[str] = Field(
        default_factory=list, description="also evaluated and reported beside split (e.g. test_seen: seen voices)"
    )
    models: list[str] = Field(default_factory=lambda: ["teacher", "student"])
    sets: dict[str, EvalSetSpec | None] = Field(
        default_factory=dict, description="named sets (see compressor.run.eval_sets); null drops one")
    before_training: bool = Field(default=False, description="also evaluate the models on the sets before "
                                                             "the first stage (e.g. as pre-trained)")
    references: list[ReferenceResult] = Field(
        default_factory=list, description="results to read this run's against, reported in summary.md")

    @field_validator("sets")
    @classmethod
    def _drop_null(cls, v: dict[str, EvalSetSpec | None]) -> dict[str, EvalSetSpec | None]:
        return {k: s for k, s in v.items() if s is not None}


class BaselineSpec(Args):
    """A baseline trained in the same run: a fresh copy of ``model`` (same initialisation) trained through the
    stages that train it, with the same data, steps, batches, optimizer and LR schedule, but without the
    strategies that need a teacher; evaluated and saved as ``<model>_alone`` beside the compressed model."""

    student_alone: bool = Field(default=True, description="train the model alone too (false turns it off)")
    model: str = Field(default="student", description="the model trained alone (one the stages train)")

    @property
    def alone_name(self) -> str:
        """The name the copy trained alone has in the run (``final/<name>.pt``, metrics, summary)."""
        return f"{self.model}_alone"


class ExportSpec(Ref):
    """``name`` is an exporter (e.g. ``onnx``); the rest are that exporter's arguments."""

    name: str = "onnx"
    model: str = "student"
    enabled: bool = True


class Spec(Args):
    name: str
    description: str = ""
    seed: int = Field(default=0, ge=0, lt=2**32, description="0 <= seed < 2**32 (NumPy's seed range)")
    output_dir: str = "runs"
    task: Ref
    data: Ref
    teacher: ModelSpec | None = None
    student: ModelSpec
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    stages: list[StageSpec] = Field(min_length=1)
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    export: ExportSpec | None = None
    baseline: BaselineSpec | None = Field(default=None, description="the same student trained alone in the "
                                                                   "same run, reported beside it")

    _name = field_validator("name")(safe_name)

    def all_models(self) -> dict[str, ModelSpec]:
        out: dict[str, ModelSpec] = {}
        if self.teacher is not None:
            out["teacher"] = self.teacher
        out["student"] = self.student
        out.update(self.models)
        return out

    def trained_alone(self) -> dict[str, str]:
        """``{copy's name: model it copies}`` for the model trained alone (``baseline``), when it is on."""
        if self.baseline is None or not self.baseline.student_alone:
            return {}
        return {self.baseline.alone_name: self.baseline.model}

    def saved_models(self) -> dict[str, ModelSpec]:
        """Every model a finished run saves in ``final/``: :meth:`all_models` and the copies trained alone
        (each with the spec of the model it copies)."""
        out = self.all_models()
        out.update({alone: out[source] for alone, source in self.trained_alone().items() if source in out})
        return out
