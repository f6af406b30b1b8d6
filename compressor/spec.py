"""Specs: YAML files that name a task, data, models, ordered training stages and their plugins.

Loading is safe (``yaml.safe_load`` semantics: tags that would build Python objects are refused) and all
validation happens before any work: every error names the file, the line, the key path, what was expected,
and the closest valid name for a typo. docs/specs.md and the generated docs/reference pages list every key.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from compressor.errors import PluginError, SpecError, UserError, did_you_mean
from compressor.init_from import InitFrom
from compressor.limits import MAX_EPOCHS, MAX_NAME_LENGTH, MAX_STAGE_STEPS, cpu_count, meta_device
from compressor.registry import Args, Registry
from compressor.specyaml import MAX_BYTES, MAX_DEPTH, YamlError, load_yaml

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
DEFAULT_SPLITS = ("train", "valid", "test")


def safe_name(value: str) -> str:
    """A name that is one safe path component (it names a run, checkpoint or weights file)."""
    if not _SAFE_NAME.match(value) or len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"a name must be 1 to {MAX_NAME_LENGTH} letters, digits, '_', '.' or '-' not starting "
                         f"with '.' or '-' (it becomes a file or directory name; pattern {_SAFE_NAME.pattern})")
    return value

# --------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------


class Ref(BaseModel):
    """A component named by key, its arguments flat beside the name: ``{name: X, arg: 1}``."""

    model_config = ConfigDict(extra="allow")
    name: str

    def args(self, reserved: tuple[str, ...] = ()) -> dict[str, Any]:
        return {k: v for k, v in (self.model_extra or {}).items() if k not in reserved}


class ModelSpec(Ref):
    """A model: registry ``name``, its arguments, and optionally ``checkpoint`` (all its weights, exactly) or
    ``init_from`` (the weights that match by name and shape, see :mod:`compressor.init_from`)."""

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
        default_factory=dict, description="named sets (see compressor.eval_sets); null drops one")
    before_training: bool = Field(default=False, description="also evaluate the models on the sets before "
                                                             "the first stage (e.g. as pre-trained)")
    references: list[ReferenceResult] = Field(
        default_factory=list, description="results to read this run's against, reported in summary.md")

    @field_validator("sets")
    @classmethod
    def _drop_null(cls, v: dict[str, EvalSetSpec | None]) -> dict[str, EvalSetSpec | None]:
        return {k: s for k, s in v.items() if s is not None}


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

    _name = field_validator("name")(safe_name)

    def all_models(self) -> dict[str, ModelSpec]:
        out: dict[str, ModelSpec] = {}
        if self.teacher is not None:
            out["teacher"] = self.teacher
        out["student"] = self.student
        out.update(self.models)
        return out


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadedSpec:
    """A validated spec: the parsed schema, the raw mapping (after ``--set``), component arguments."""

    spec: Spec
    raw: dict[str, Any]
    file: str
    task_args: BaseModel
    data_args: BaseModel
    model_args: dict[str, BaseModel]
    plugin_args: list[list[BaseModel]]
    export_args: BaseModel | None = None
    optimizer_args: list[BaseModel] = field(default_factory=list)
    lr_schedule_args: list[BaseModel] = field(default_factory=list)
    lines: dict[tuple, int] = field(default_factory=dict)
    stage_task_args: list[BaseModel | None] = field(default_factory=list)
    stage_data_args: list[BaseModel | None] = field(default_factory=list)

    def stage_task(self, index: int) -> tuple[str, BaseModel]:
        """The task name and arguments stage ``index`` runs (its own, or the spec's)."""
        st = self.spec.stages[index]
        if st.task is not None and index < len(self.stage_task_args):
            return st.task.name, self.stage_task_args[index]  # type: ignore[return-value]
        return self.spec.task.name, self.task_args

    def stage_data(self, index: int) -> tuple[str, BaseModel]:
        """The dataset name and arguments stage ``index`` trains on (its own, or the spec's)."""
        st = self.spec.stages[index]
        if st.data is not None and index < len(self.stage_data_args):
            return st.data.name, self.stage_data_args[index]  # type: ignore[return-value]
        return self.spec.data.name, self.data_args


def read_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse a YAML file safely and within bounds (see :mod:`compressor.specyaml`); return the data and a
    map from key paths to line numbers."""
    path = Path(path)
    try:
        if path.is_dir():
            raise SpecError(f"expected a YAML file, got a directory: {path}", file=str(path))
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}", file=str(path)) from None
    except OSError as e:
        raise SpecError(f"cannot read the spec: {e.strerror or e}", file=str(path)) from None
    if len(raw) > MAX_BYTES:
        raise SpecError(f"larger than {MAX_BYTES // 1024} KiB: a spec is a page of YAML", file=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not a UTF-8 text file ({e.reason})", file=str(path)) from None
    try:
        return load_yaml(text)
    except YamlError as e:
        raise SpecError(e.message, file=str(path), line=e.line) from None


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``stages[1].epochs=3`` or ``stages.1.epochs=3`` -> (["stages", 1, "epochs"], 3)."""
    if "=" not in text:
        raise SpecError(f"--set expects KEY.PATH=VALUE, got '{text}'", file="--set")
    key, value = text.split("=", 1)
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+", key.strip()):
        parts.append(int(token) if token.isdigit() else token)
    if not parts:
        raise SpecError(f"--set has an empty key path in '{text}'", file="--set")
    if len(parts) > MAX_DEPTH:
        raise SpecError(f"key path deeper than {MAX_DEPTH} levels", file=_flag(text))
    try:
        parsed = load_yaml(value)[0] if value.strip() else ""
    except YamlError as e:
        if e.malformed:
            parsed = value  # not YAML: the text itself
        else:
            raise SpecError(e.message, file=_flag(text)) from None
    return parts, parsed


def _flag(text: str) -> str:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return f"--set {shown}"


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        flag = _flag(text)
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise SpecError(f"no list item {part} (the list has {len(node)})", parts[:i + 1], flag)
                node = node[part]
            elif isinstance(node, dict):
                if part not in node or node[part] is None:
                    node[part] = [] if isinstance(nxt, int) else {}
                node = node[part]
            else:
                raise SpecError("cannot descend into a scalar value", parts[:i + 1], flag)
        last = parts[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last > len(node):
                raise SpecError(f"no list item {last} (the list has {len(node)})", parts, flag)
            if last == len(node):
                node.append(value)
            else:
                node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise SpecError("cannot set a key inside a scalar value", parts, flag)
    return data


def validate_model(schema: type[BaseModel], values: Any, path: tuple = ()) -> BaseModel:
    """Validate ``values`` against a pydantic schema; the first error becomes a :class:`SpecError`."""
    try:
        return schema.model_validate(values)
    except ValidationError as e:
        raise _to_spec_error(e, schema, path) from None


def _to_spec_error(e: ValidationError, schema: type[BaseModel], path: tuple) -> SpecError:
    err = e.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    full = path + loc
    kind = err["type"]
    if kind == "extra_forbidden":
        fields = _fields_at(schema, loc[:-1])
        return SpecError(f"unknown key '{loc[-1]}'{did_you_mean(str(loc[-1]), fields)}", full)
    if kind == "missing":
        return SpecError("required key is missing", full)
    given = err.get("input")
    text = repr(given)
    shown = "" if isinstance(given, (dict, list)) or given is None else (
        f" (got {text if len(text) <= 60 else text[:40] + '...' + text[-10:]})")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    msg = msg.replace("Input should be", "expected")
    return SpecError(f"{msg}{shown}", full)


def _fields_at(schema: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) pydantic model at ``loc``, for typo hints."""
    current: Any = schema
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        ann = fields[part].annotation
        current = _first_model(ann)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _first_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def load_spec(path: str | Path, overrides: list[str] | None = None, registry: Registry | None = None,
              check_machine: bool = True) -> LoadedSpec:
    """Read, override, validate and resolve a spec; raise :class:`SpecError` on the first problem.

    An error caused by a ``--set`` value names that flag rather than a line of the file. ``check_machine=False``
    skips what depends on this machine (output directory, CPUs, memory for training): for the spec of a run
    that was validated when it started and is now evaluated, exported or resumed, possibly elsewhere.
    """
    from compressor.plugins import get_registry

    file = str(path)
    data, lines = read_yaml(path)
    registry = registry or get_registry()
    if data is None or (isinstance(data, (dict, list, str)) and not data):
        raise SpecError("the spec is empty: expected a mapping with name, task, data, student and stages",
                        file=file, line=1)
    if not isinstance(data, dict):
        raise SpecError(f"the spec must be a mapping of keys to values, got a {type(data).__name__}",
                        file=file, line=1)
    overrides = list(overrides or [])
    set_paths = [(tuple(parse_override(text)[0]), text) for text in overrides]
    try:
        loaded = _validate(apply_overrides(data, overrides), file, registry, check_machine)
    except SpecError as e:
        raise _locate(e, file, lines, set_paths, data, registry, check_machine) from None
    loaded.lines = lines
    return loaded


def _locate(e: SpecError, file: str, lines: dict[tuple, int], set_paths: list[tuple[tuple, str]],
            data: dict[str, Any], registry: Registry, check_machine: bool = True) -> SpecError:
    """Place an error: at the ``--set`` flag that caused it, else at the file's line for its key path."""
    if e.file is not None and e.file != file:
        return SpecError(e.message, e.path, e.file, e.line)
    path = tuple(e.path)
    inside = [text for p, text in set_paths if path[:len(p)] == p]
    flag = inside[-1] if inside else None
    if flag is None and set_paths and path:
        # A check across keys (a sibling or parent of a --set key) may fail because of the override: blame the
        # closest flag unless the file alone fails the same way.
        def shared(p: tuple) -> int:
            return next((i for i, (a, b) in enumerate(zip(p, path)) if a != b), min(len(p), len(path)))

        best = max(set_paths, key=lambda pt: shared(pt[0]))
        if shared(best[0]) > 0:
            try:
                _validate(copy.deepcopy(data), file, registry, check_machine)
                alone: SpecError | None = None
            except SpecError as e2:
                alone = e2
            except Exception:
                alone = None
            if alone is None or (alone.message, tuple(alone.path)) != (e.message, path):
                flag = [text for p, text in set_paths if shared(p) == shared(best[0])][-1]
    if flag is not None:
        return SpecError(e.message, e.path, _flag(flag), None)
    return SpecError(e.message, e.path, file, e.line if e.line is not None else _nearest_line(lines, path))


def _nearest_line(lines: dict[tuple, int], path: tuple) -> int | None:
    path = tuple(path)
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path)


def _validate(data: dict[str, Any], file: str, registry: Registry, check_machine: bool = True) -> LoadedSpec:
    spec = validate_model(Spec, data)
    assert isinstance(spec, Spec)
    if check_machine:
        _check_machine(spec)
    task_args = registry.parse_args("task", spec.task.name, spec.task.args(), ("task",))
    data_args = registry.parse_args("dataset", spec.data.name, spec.data.args(), ("data",))
    _check_dataset(registry, spec.data.name, data_args)

    models = spec.all_models()
    if spec.teacher is not None and "teacher" in spec.models:
        raise SpecError("'teacher' is given both at the top level and under models", ("models", "teacher"))
    if "student" in spec.models:
        raise SpecError("'student' is given both at the top level and under models", ("models", "student"))
    model_args: dict[str, BaseModel] = {}
    for name, ms in models.items():
        where = (name,) if name in ("teacher", "student") else ("models", name)
        if name not in ("teacher", "student"):
            try:
                safe_name(name)
            except ValueError as e:
                raise SpecError(str(e), where) from None
        model_args[name] = registry.parse_args("model", ms.name, ms.args(("checkpoint",)), where)

    plugin_args: list[list[BaseModel]] = []
    optimizer_args: list[BaseModel] = []
    lr_schedule_args: list[BaseModel] = []
    stage_task_args: list[BaseModel | None] = []
    stage_data_args: list[BaseModel | None] = []
    seen_names: set[str] = set()
    for i, st in enumerate(spec.stages):
        sp = ("stages", i)
        stage_task_args.append(None if st.task is None else
                               registry.parse_args("task", st.task.name, st.task.args(), sp + ("task",)))
        stage_data_args.append(None if st.data is None else
                               registry.parse_args("dataset", st.data.name, st.data.args(), sp + ("data",)))
        if st.name in seen_names:
            raise SpecError(f"duplicate stage name '{st.name}'", sp + ("name",))
        seen_names.add(st.name)
        for key in ("train", "frozen"):
            for j, m in enumerate(getattr(st, key)):
                if m not in models:
                    raise SpecError(f"unknown model '{m}'{did_you_mean(m, models)}", sp + (key, j))
        both = set(st.train) & set(st.frozen)
        if both:
            raise SpecError(f"model '{sorted(both)[0]}' is both trained and frozen", sp + ("frozen",))
        if st.forward is not None and st.forward not in models:
            raise SpecError(f"unknown model '{st.forward}'{did_you_mean(st.forward, models)}", sp + ("forward",))
        optimizer_args.append(registry.parse_args("optimizer", st.optimizer.name, st.optimizer.args(),
                                                  sp + ("optimizer",)))
        lr_schedule_args.append(registry.parse_args("lr_schedule", st.lr_schedule.name, st.lr_schedule.args(),
                                                    sp + ("lr_schedule",)))
        args_list = []
        for j, ref in enumerate(st.plugins):
            pp = sp + ("plugins", j)
            entry = registry.get("strategy", ref.name, pp)
            args = validate_model(entry.args, ref.args(), pp)
            args_list.append(args)
        plugin_args.append(args_list)
    from compressor.teachers import resolve_vocabularies

    resolve_vocabularies(registry, spec, model_args, [(("data",), data_args)] + [
        (("stages", i, "data"), a) for i, a in enumerate(stage_data_args)])
    export_args = None
    if spec.export is not None and spec.export.enabled:
        if spec.export.model not in models:
            raise SpecError(f"unknown model '{spec.export.model}'{did_you_mean(spec.export.model, models)}",
                            ("export", "model"))
        export_args = registry.parse_args("exporter", spec.export.name,
                                          spec.export.args(("model", "enabled")), ("export",))
    for j, m in enumerate(spec.evaluate.models):
        if m not in models:
            raise SpecError(f"unknown model '{m}'{did_you_mean(m, models)}", ("evaluate", "models", j))
        why = registry.get("model", models[m].name).extra.get("not_evaluable")  # e.g. a transcripts-only teacher
        if why:
            raise SpecError(f"model '{m}' ({models[m].name}) {why}", ("evaluate", "models", j))
    for j, ref in enumerate(spec.evaluate.references):
        if ref.model not in spec.evaluate.models:
            raise SpecError(f"reference for '{ref.model}', which the final evaluation does not evaluate "
                            f"(evaluate.models: {', '.join(spec.evaluate.models)})", ("evaluate", "references", j,
                                                                                    "model"))

    loaded = LoadedSpec(spec, data, file, task_args, data_args, model_args, plugin_args, export_args,
                        optimizer_args, lr_schedule_args, stage_task_args=stage_task_args,
                        stage_data_args=stage_data_args)
    info = _meta_info(loaded, registry)
    check_splits(spec, info.get("splits") or DEFAULT_SPLITS)
    from compressor.limits import check_model_sizes

    if check_machine:
        check_model_sizes(loaded, registry, info)  # before anything builds a model, even on the meta device
    from compressor import eval_sets, init_from

    init_from.check(loaded)
    eval_sets.check(loaded, registry)
    for name, ms in models.items():
        if ms.checkpoint is not None:
            check_checkpoint(loaded, registry, name, info)
    _check_model_inputs(loaded, registry)
    # Strategy-level checks against the whole spec (module names, pairable shapes, schedules).
    for i, st in enumerate(spec.stages):
        for j, ref in enumerate(st.plugins):
            entry = registry.get("strategy", ref.name)
            check = CheckContext(loaded, registry, i, ("stages", i, "plugins", j))
            try:
                entry.factory.check(plugin_args[i][j], check)
            except UserError:
                raise
            except (Exception, SystemExit) as e:
                raise PluginError(ref.name, "check", e, action="failed in check()", package=entry.package) from e
    return loaded


def model_reads(registry: Registry, loaded: LoadedSpec, name: str, optional: bool = False
                ) -> tuple[str, ...] | None:
    """The batch keys model ``name`` reads, as its registry entry declares, or None if it does not say.

    ``registry.add("model", ..., reads=("text",), reads_optional=("text_ids",))``; either may also be a function
    of the model's arguments (``reads=lambda args: (args.text_key,)``). ``reads`` must be in every batch;
    ``reads_optional`` are used when present (token ids a masking plugin wrote). ``optional=True`` returns both.
    """
    ms = loaded.spec.all_models()[name]
    extra = registry.get("model", ms.name).extra
    out: list[str] = []
    for key in ("reads", "reads_optional") if optional else ("reads",):
        value = extra.get(key)
        if value is None:
            if key == "reads":
                return None
            continue
        out += list(value(loaded.model_args[name]) if callable(value) else value)
    return tuple(out)


def data_info(loaded: LoadedSpec, registry: Registry, stage_index: int | None = None) -> dict[str, Any]:
    """What is known about a stage's data (or the spec's) before any data exists; ``batch_keys`` lists the
    keys every batch is guaranteed to carry, where the dataset declares them."""
    if stage_index is None:
        name, args = loaded.spec.data.name, loaded.data_args
    else:
        name, args = loaded.stage_data(stage_index)
    hint = registry.get("dataset", name).extra.get("info")
    return dict(hint(args)) if hint else {}


def _check_model_inputs(loaded: LoadedSpec, registry: Registry) -> None:
    """Refuse a stage whose models read batch keys its data does not provide (a text teacher on data
    without transcripts)."""
    for i, st in enumerate(loaded.spec.stages):
        info = data_info(loaded, registry, i)
        keys = info.get("batch_keys")
        if keys is None:
            continue
        keys = [*keys, *info.get("batch_keys_on_request", ())]  # loaded when a model reads them
        data_name = loaded.stage_data(i)[0]
        roles = [("train", j, m) for j, m in enumerate(st.train)] + [("frozen", j, m) for j, m in
                                                                      enumerate(st.frozen)]
        if st.forward is not None:
            roles.append(("forward", None, st.forward))
        for role, j, m in roles:
            missing = [k for k in model_reads(registry, loaded, m) or () if k not in keys]
            if missing:
                path = ("stages", i, role) + ((j,) if j is not None else ())
                raise SpecError(f"model '{m}' ({loaded.spec.all_models()[m].name}) reads batch key "
                                f"'{missing[0]}', which the data ({data_name}) does not provide (its batches "
                                f"carry: {', '.join(keys)})", path)


def _check_machine(spec: Spec) -> None:
    """What the spec asks of this machine: a writable output directory, CPUs for threads and workers."""
    out = Path(spec.output_dir).expanduser()
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise SpecError(f"output_dir '{spec.output_dir}' exists and is not a directory", ("output_dir",))
        existing = out
    else:
        existing = out.absolute().parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise SpecError(f"output_dir '{spec.output_dir}' cannot be created: {existing} is not a directory",
                            ("output_dir",))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SpecError(f"output_dir '{spec.output_dir}': {existing} is not writable", ("output_dir",))
    cpus = cpu_count()
    trainer = spec.trainer
    for key in ("threads", "num_workers"):
        value = getattr(trainer, key)
        if value is not None and value > cpus:
            raise SpecError(f"{value} is more than the {cpus} CPUs this process may use", ("trainer", key))


def check_splits(spec: Spec, splits: Any) -> None:
    """Every split the spec evaluates on must exist in the data."""
    splits = list(splits)
    for i, st in enumerate(spec.stages):
        if st.eval.every != "never" and st.eval.split not in splits:
            raise SpecError(f"the data has no split '{st.eval.split}'{did_you_mean(st.eval.split, splits)}",
                            ("stages", i, "eval", "split"))
    if spec.evaluate.models and spec.evaluate.split not in splits:
        raise SpecError(f"the data has no split '{spec.evaluate.split}'{did_you_mean(spec.evaluate.split, splits)}",
                        ("evaluate", "split"))
    for i, split in enumerate(spec.evaluate.extra_splits if spec.evaluate.models else []):
        if split not in splits:
            raise SpecError(f"the data has no split '{split}'{did_you_mean(split, splits)}",
                            ("evaluate", "extra_splits", i))


def _check_dataset(registry: Registry, name: str, args: BaseModel) -> None:
    """A dataset may register ``check=fn(args)`` for what its schema cannot see (disk, memory, speakers)."""
    entry = registry.get("dataset", name)
    check = entry.extra.get("check")
    if check is None:
        return
    try:
        check(args)
    except SpecError as e:
        raise SpecError(e.message, ("data", *e.path)) from None
    except UserError as e:
        raise SpecError(str(e), ("data",)) from None
    except (Exception, SystemExit) as e:
        raise PluginError(name, "check", e, action="failed in check()", package=entry.package,
                          subject=f"dataset '{name}'") from e


def check_checkpoint(loaded: LoadedSpec, registry: Registry, name: str, info: dict[str, Any]) -> None:
    """A model's ``checkpoint`` must be a readable state dict that fits the model (checked on the meta
    device when the model can be built from what is known before the data exists)."""
    from compressor.checkpoint import load_state_dict_file, mismatch

    ms = loaded.spec.all_models()[name]
    where = ((name,) if name in ("teacher", "student") else ("models", name)) + ("checkpoint",)
    try:
        state = load_state_dict_file(Path(str(ms.checkpoint)).expanduser())
    except UserError as e:
        raise SpecError(str(e), where) from None
    entry = registry.get("model", ms.name)
    try:
        with meta_device():
            model = entry.factory(loaded.model_args[name], info=dict(info))
    except Exception:
        return  # needs the real data's facts: the run checks again before it trains
    problem = mismatch(model, state)
    if problem:
        raise SpecError(f"{ms.checkpoint} does not match the '{name}' model ({ms.name}): {problem}", where)


class CheckContext:
    """What a strategy's ``check`` sees: the spec, its stage, and models built on the meta device."""

    def __init__(self, loaded: LoadedSpec, registry: Registry, stage_index: int, path: tuple) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.registry = registry
        self.stage_index = stage_index
        self.stage = loaded.spec.stages[stage_index]
        self.path = path
        plugins = self.stage.plugins
        #: the name of the plugin being checked (for messages)
        self.plugin = plugins[path[3]].name if len(path) > 3 and isinstance(path[3], int) else "?"
        self._models: dict[str, torch.nn.Module] = {}

    def error(self, message: str, *subpath: str | int) -> SpecError:
        """A :class:`SpecError` at this plugin's key path (plus ``subpath``); ``raise check.error(...)``."""
        return SpecError(message, self.path + tuple(subpath))

    def model_names(self) -> list[str]:
        """Names of every model in the spec (``teacher``, ``student`` and the ``models:`` section)."""
        return list(self.spec.all_models())

    def require_model(self, name: str, key: str | int = "model") -> None:
        """Refuse a model name the spec does not have, at this plugin's ``key``, with the closest name."""
        names = self.model_names()
        if name not in names:
            raise self.error(f"no model named '{name}'{did_you_mean(name, names)}", key)

    def model_outputs(self, name: str) -> tuple[str, ...] | None:
        """Output keys model ``name`` returns, as its registry entry declares (``outputs=``, a tuple or a
        function of the model's arguments), or None when it does not say."""
        ms = self.loaded.spec.all_models().get(name)
        if ms is None:
            return None
        value = self.registry.get("model", ms.name).extra.get("outputs")
        if value is None:
            return None
        return tuple(value(self.loaded.model_args[name]) if callable(value) else value)

    def model_reads(self, name: str, optional: bool = False) -> tuple[str, ...] | None:
        """Batch keys model ``name`` reads (declared by its registry entry), or None when it does not say;
        ``optional=True`` adds the keys it uses when present."""
        return model_reads(self.registry, self.loaded, name, optional)

    def data_info(self) -> dict[str, Any]:
        """What is known about this stage's data before it exists (``feature_dim``, ``batch_keys``, ...)."""
        return data_info(self.loaded, self.registry, self.stage_index)

    def stage_strategies(self) -> list[tuple[int, Any, BaseModel]]:
        """``(index, strategy class, validated args)`` of every plugin of this stage."""
        refs = self.stage.plugins
        return [(j, self.registry.get("strategy", ref.name).factory, self.loaded.plugin_args[self.stage_index][j])
                for j, ref in enumerate(refs)]

    def build_model(self, name: str) -> torch.nn.Module:
        """Build model ``name`` on the meta device: structure and shapes without memory or data.

        A name the spec does not have is a :class:`SpecError` at the plugin's key path, naming the plugin.
        """
        if name not in self.spec.all_models():
            names = self.model_names()
            raise SpecError(f"plugin '{self.plugin}' needs a model named '{name}', which the spec does not have"
                            f"{did_you_mean(name, names)}; add it under 'models:'", self.path)
        if name not in self._models:
            ms = self.spec.all_models()[name]
            entry = self.registry.get("model", ms.name)
            info = _meta_info(self.loaded, self.registry)
            with meta_device():
                self._models[name] = entry.factory(self.loaded.model_args[name], info=info)
        return self._models[name]

    def try_build_model(self, name: str) -> torch.nn.Module | None:
        """:meth:`build_model`, or None when the model cannot be built before the data exists (the run then
        builds it with the real data's facts and reports a failure there, naming the model)."""
        try:
            return self.build_model(name)
        except Exception:
            return None


def _meta_info(loaded: LoadedSpec, registry: Registry) -> dict[str, Any]:
    """Data facts for building models at validation time, before any data exists.

    A dataset entry may register ``info=fn(args) -> dict`` (vocabulary size, classes) for this purpose.
    """
    entry = registry.get("dataset", loaded.spec.data.name)
    hint = entry.extra.get("info")
    if hint is None:
        return {}
    try:
        return dict(hint(loaded.data_args))
    except UserError as e:
        raise SpecError(str(e), ("data",)) from None
    except (Exception, SystemExit) as e:
        raise PluginError(entry.name, "info", e, action="failed to describe its data (info)",
                          package=entry.package, subject=f"dataset '{entry.name}'") from e


def dump_spec(raw: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(raw), sort_keys=False)
