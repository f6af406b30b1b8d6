"""Loading a spec: read, override, validate and resolve it into a :class:`LoadedSpec`, or raise the first
:class:`SpecError`, placed at its file, line and key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from compressor.core.errors import PluginError, SpecError, UserError, did_you_mean
from compressor.core.limits import check_model_sizes
from compressor.core.registry import Registry, validate_model
from compressor.core.teachers import resolve_vocabularies
from compressor.plugins import get_registry
from compressor.spec.checks import (
    CheckContext,
    check_baseline,
    check_checkpoint,
    check_dataset,
    check_model_data,
    check_model_inputs,
    check_splits,
    check_this_machine,
    meta_info,
)
from compressor.spec.eval_sets import check as check_eval_sets
from compressor.spec.init_from import check as check_init_from
from compressor.spec.loading import apply_overrides, parse_override, read_yaml
from compressor.spec.location import locate
from compressor.spec.resolved import LoadedSpec, ResolvedStage
from compressor.spec.schema import DEFAULT_SPLITS, Spec, safe_name


def load_spec(path: str | Path, overrides: list[str] | None = None, registry: Registry | None = None,
              check_machine: bool = True) -> LoadedSpec:
    """Read, override, validate and resolve a spec; raise :class:`SpecError` on the first problem.

    An error caused by a ``--set`` value names that flag rather than a line of the file. ``check_machine=False``
    skips what depends on this machine (output directory, CPUs, memory for training): for the spec of a run
    that was validated when it started and is now evaluated, exported or resumed, possibly elsewhere.
    """
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
        loaded = resolve(apply_overrides(data, overrides), file, registry, check_machine)
    except SpecError as e:
        def alone() -> LoadedSpec:  # the file without the overrides
            return resolve(copy.deepcopy(data), file, registry, check_machine)

        raise locate(e, file, lines, set_paths, alone) from None
    loaded.lines = lines
    return loaded


def resolve(data: dict[str, Any], file: str, registry: Registry, check_machine: bool = True) -> LoadedSpec:
    spec = validate_model(Spec, data, registry=registry)
    assert isinstance(spec, Spec)
    if check_machine:
        check_this_machine(spec)
    task_args = registry.parse_args("task", spec.task.name, spec.task.args(), ("task",))
    data_args = registry.parse_args("dataset", spec.data.name, spec.data.args(), ("data",))
    check_dataset(registry, spec.data.name, data_args)

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

    stages: list[ResolvedStage] = []
    own_data: list[BaseModel | None] = []
    seen_names: set[str] = set()
    for i, st in enumerate(spec.stages):
        sp = ("stages", i)
        stage_task_args = (task_args if st.task is None else
                           registry.parse_args("task", st.task.name, st.task.args(), sp + ("task",)))
        stage_data_args = (data_args if st.data is None else
                           registry.parse_args("dataset", st.data.name, st.data.args(), sp + ("data",)))
        own_data.append(None if st.data is None else stage_data_args)
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
        optimizer_args = registry.parse_args("optimizer", st.optimizer.name, st.optimizer.args(), sp + ("optimizer",))
        lr_schedule_args = registry.parse_args("lr_schedule", st.lr_schedule.name, st.lr_schedule.args(),
                                               sp + ("lr_schedule",))
        plugin_args = []
        for j, ref in enumerate(st.plugins):
            pp = sp + ("plugins", j)
            entry = registry.get("strategy", ref.name, pp)
            plugin_args.append(validate_model(entry.args, ref.args(), pp, registry=registry))
        stages.append(ResolvedStage(
            spec=st, plugin_args=tuple(plugin_args), optimizer_args=optimizer_args, lr_schedule_args=lr_schedule_args,
            task=spec.task.name if st.task is None else st.task.name, task_args=stage_task_args,
            data=spec.data.name if st.data is None else st.data.name, data_args=stage_data_args))
    resolve_vocabularies(registry, spec, model_args, [(("data",), data_args)] + [
        (("stages", i, "data"), a) for i, a in enumerate(own_data)])
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
    check_baseline(spec)

    loaded = LoadedSpec(spec, data, file, task_args, data_args, model_args, tuple(stages), export_args)
    info = meta_info(loaded, registry)
    check_splits(spec, info.get("splits") or DEFAULT_SPLITS)
    if check_machine:
        check_model_sizes(loaded, registry, info)  # before anything builds a model, even on the meta device
    check_model_data(loaded, registry, info)
    check_init_from(loaded, registry, lambda path, overrides: load_spec(path, overrides, registry))
    check_eval_sets(loaded, registry)
    for name, ms in models.items():
        if ms.checkpoint is not None:
            check_checkpoint(loaded, registry, name, info)
    check_model_inputs(loaded, registry)
    # Strategy-level checks against the whole spec (module names, pairable shapes, schedules).
    for i, st in enumerate(spec.stages):
        for j, ref in enumerate(st.plugins):
            entry = registry.get("strategy", ref.name)
            check = CheckContext(loaded, registry, i, ("stages", i, "plugins", j))
            try:
                entry.factory.check(loaded.stages[i].plugin_args[j], check)
            except UserError:
                raise
            except (Exception, SystemExit) as e:
                raise PluginError(ref.name, "check", e, action="failed in check()", package=entry.package) from e
    return loaded
