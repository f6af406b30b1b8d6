"""Specs: YAML files that name a task, data, models, ordered training stages and their plugins.

Loading is safe (``yaml.safe_load`` semantics: tags that would build Python objects are refused) and all
validation happens before any work: every error names the file, the line, the key path, what was expected,
and the closest valid name for a typo. See the README's spec reference for every key.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from compressor.errors import SpecError, did_you_mean
from compressor.init_from import InitFrom
from compressor.registry import Args, Registry

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
    train: list[str] = Field(min_length=1)
    frozen: list[str] = Field(default_factory=list)
    forward: str | None = None
    plugins: list[Ref] = Field(default_factory=list)
    optimizer: OptimizerRef = Field(default_factory=OptimizerRef)
    lr_schedule: LRScheduleRef = Field(default_factory=LRScheduleRef)
    epochs: int | None = Field(default=None, ge=1)
    steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=16, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    grad_clip: float | None = Field(default=None, gt=0)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    handoff: Literal["best", "last"] = "best"
    checkpoint_every: int | None = Field(default=None, ge=1)

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


class EvalSetSpec(Args):
    """A named evaluation set: a split of the run's data, or of another dataset (``data``)."""

    data: Ref | None = None
    split: str = "test"


class EvaluateSpec(Args):
    split: str = "test"
    models: list[str] = Field(default_factory=lambda: ["teacher", "student"])
    sets: dict[str, EvalSetSpec | None] = Field(
        default_factory=dict, description="named sets (see compressor.eval_sets); null drops one")
    before_training: bool = Field(default=False, description="also evaluate the models on the sets before "
                                                             "the first stage (e.g. as pre-trained)")

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
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = 0
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


def read_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse a YAML file safely; return the data and a map from key paths to line numbers."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"spec file not found: {path}", file=str(path))
    if path.is_dir():
        raise SpecError(f"expected a YAML file, got a directory: {path}", file=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not a UTF-8 text file ({e.reason})", file=str(path)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        tag = re.search(r"tag '([^']+)'", str(e))
        what = f"YAML tag '{tag.group(1)}'" if tag else "a YAML tag"
        raise SpecError(f"{what} is not allowed: specs are plain data and never construct objects",
                        file=str(path), line=line) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(e, "problem", None) or str(e).split("\n")[0]
        raise SpecError(f"malformed YAML: {problem}", file=str(path), line=line) from None
    return data, _line_map(node)


def _line_map(node: yaml.Node | None, path: tuple = ()) -> dict[tuple, int]:
    lines: dict[tuple, int] = {}
    if node is None:
        return lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            lines.update(_line_map(value, sub))
            lines[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            lines.update(_line_map(value, path + (i,)))
    return lines


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
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return parts, parsed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise SpecError(f"--set: no list item {part} (the list has {len(node)})", parts[:i + 1],
                                    "--set")
                node = node[part]
            elif isinstance(node, dict):
                if part not in node or node[part] is None:
                    node[part] = [] if isinstance(nxt, int) else {}
                node = node[part]
            else:
                raise SpecError("--set: cannot descend into a scalar value", parts[:i + 1], "--set")
        last = parts[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last > len(node):
                raise SpecError(f"--set: no list item {last}", parts, "--set")
            if last == len(node):
                node.append(value)
            else:
                node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise SpecError("--set: cannot set a key inside a scalar value", parts, "--set")
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
    shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
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


def load_spec(path: str | Path, overrides: list[str] | None = None, registry: Registry | None = None
              ) -> LoadedSpec:
    """Read, override, validate and resolve a spec; raise :class:`SpecError` on the first problem."""
    from compressor.plugins import get_registry

    registry = registry or get_registry()
    file = str(path)
    data, lines = read_yaml(path)
    if data is None or (isinstance(data, (dict, list, str)) and not data):
        raise SpecError("the spec is empty: expected a mapping with name, task, data, student and stages",
                        file=file, line=1)
    if not isinstance(data, dict):
        raise SpecError(f"the spec must be a mapping of keys to values, got a {type(data).__name__}",
                        file=file, line=1)
    try:
        data = apply_overrides(data, list(overrides or []))
        loaded = _validate(data, file, registry)
    except SpecError as e:
        if e.file is None:
            e.file = file
        if e.line is None and e.file == file:
            e.line = _nearest_line(lines, e.path)
        raise SpecError(e.message, e.path, e.file, e.line) from None
    loaded.lines = lines
    return loaded


def _nearest_line(lines: dict[tuple, int], path: tuple) -> int | None:
    path = tuple(path)
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path)


def _validate(data: dict[str, Any], file: str, registry: Registry) -> LoadedSpec:
    spec = validate_model(Spec, data)
    assert isinstance(spec, Spec)
    task_args = registry.parse_args("task", spec.task.name, spec.task.args(), ("task",))
    data_args = registry.parse_args("dataset", spec.data.name, spec.data.args(), ("data",))

    models = spec.all_models()
    if spec.teacher is not None and "teacher" in spec.models:
        raise SpecError("'teacher' is given both at the top level and under models", ("models", "teacher"))
    if "student" in spec.models:
        raise SpecError("'student' is given both at the top level and under models", ("models", "student"))
    model_args: dict[str, BaseModel] = {}
    for name, ms in models.items():
        where = (name,) if name in ("teacher", "student") else ("models", name)
        model_args[name] = registry.parse_args("model", ms.name, ms.args(("checkpoint",)), where)
        if ms.checkpoint is not None and not Path(ms.checkpoint).exists():
            raise SpecError(f"checkpoint file not found: {ms.checkpoint}", where + ("checkpoint",))

    plugin_args: list[list[BaseModel]] = []
    optimizer_args: list[BaseModel] = []
    lr_schedule_args: list[BaseModel] = []
    seen_names: set[str] = set()
    for i, st in enumerate(spec.stages):
        sp = ("stages", i)
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

    loaded = LoadedSpec(spec, data, file, task_args, data_args, model_args, plugin_args, export_args,
                        optimizer_args, lr_schedule_args)
    from compressor import eval_sets, init_from

    init_from.check(loaded)
    eval_sets.check(loaded, registry)
    # Strategy-level checks against the whole spec (module names, pairable shapes, schedules).
    for i, st in enumerate(spec.stages):
        for j, ref in enumerate(st.plugins):
            entry = registry.get("strategy", ref.name)
            check = CheckContext(loaded, registry, i, ("stages", i, "plugins", j))
            entry.factory.check(plugin_args[i][j], check)
    return loaded


class CheckContext:
    """What a strategy's ``check`` sees: the spec, its stage, and models built on the meta device."""

    def __init__(self, loaded: LoadedSpec, registry: Registry, stage_index: int, path: tuple) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.registry = registry
        self.stage_index = stage_index
        self.stage = loaded.spec.stages[stage_index]
        self.path = path
        self._models: dict[str, torch.nn.Module] = {}

    def error(self, message: str, *subpath: str | int) -> SpecError:
        """A :class:`SpecError` at this plugin's key path (plus ``subpath``); ``raise check.error(...)``."""
        return SpecError(message, self.path + tuple(subpath))

    def model_names(self) -> list[str]:
        return list(self.spec.all_models())

    def build_model(self, name: str) -> torch.nn.Module:
        """Build model ``name`` on the meta device: structure and shapes without memory or data."""
        if name not in self._models:
            ms = self.spec.all_models()[name]
            entry = self.registry.get("model", ms.name)
            with torch.device("meta"):
                info = _meta_info(self.loaded, self.registry)
                self._models[name] = entry.factory(self.loaded.model_args[name], info=info)
        return self._models[name]


def _meta_info(loaded: LoadedSpec, registry: Registry) -> dict[str, Any]:
    """Data facts for building models at validation time, before any data exists.

    A dataset entry may register ``info=fn(args) -> dict`` (vocabulary size, classes) for this purpose.
    """
    entry = registry.get("dataset", loaded.spec.data.name)
    hint = entry.extra.get("info")
    return dict(hint(loaded.data_args)) if hint else {}


def dump_spec(raw: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(raw), sort_keys=False)
