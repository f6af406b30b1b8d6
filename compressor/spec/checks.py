"""Checks across a whole spec, before any work: splits, datasets, checkpoints, model inputs, the machine, and
the :class:`CheckContext` a strategy's ``check`` receives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from compressor.core.checkpoint import load_state_dict_file, mismatch
from compressor.core.errors import PluginError, SpecError, UserError, did_you_mean
from compressor.core.limits import cpu_count, meta_device
from compressor.core.registry import Registry
from compressor.spec.resolved import LoadedSpec
from compressor.spec.schema import Spec


def model_reads(registry: Registry, loaded: LoadedSpec, name: str, optional: bool = False
                ) -> tuple[str, ...] | None:
    """The batch keys model ``name`` of the spec reads (see :meth:`Registry.model_reads`)."""
    return registry.model_reads(loaded.spec.all_models()[name].name, loaded.model_args[name], optional)


def data_info(loaded: LoadedSpec, registry: Registry, stage_index: int | None = None) -> dict[str, Any]:
    """What is known about a stage's data (or the spec's) before any data exists; ``batch_keys`` lists the
    keys every batch is guaranteed to carry, where the dataset declares them."""
    if stage_index is None:
        name, args = loaded.spec.data.name, loaded.data_args
    else:
        name, args = loaded.stages[stage_index].data, loaded.stages[stage_index].data_args
    hint = registry.get("dataset", name).extra.get("info")
    return dict(hint(args)) if hint else {}


def check_model_inputs(loaded: LoadedSpec, registry: Registry) -> None:
    """Refuse a stage whose models read batch keys its data does not provide (a text teacher on data
    without transcripts)."""
    for i, st in enumerate(loaded.spec.stages):
        info = data_info(loaded, registry, i)
        keys = info.get("batch_keys")
        if keys is None:
            continue
        keys = [*keys, *info.get("batch_keys_on_request", ())]  # loaded when a model reads them
        data_name = loaded.stages[i].data
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


def check_this_machine(spec: Spec) -> None:
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


def check_baseline(spec: Spec) -> None:
    """``baseline``: the model trained alone is one that an enabled stage trains through itself, and its copy's
    name is free."""
    if spec.baseline is None or not spec.baseline.student_alone:
        return
    name, models = spec.baseline.model, spec.all_models()
    where = ("baseline", "model")
    if name not in models:
        raise SpecError(f"unknown model '{name}'{did_you_mean(name, models)}", where)
    stages = [(i, st) for i, st in enumerate(spec.stages) if st.enabled and name in st.train]
    if not stages:
        raise SpecError(f"model '{name}' is not trained by any (enabled) stage, so there is nothing to train it "
                        f"alone through; name a model a stage trains, or set baseline.student_alone: false", where)
    for i, st in stages:
        if st.forward is not None and st.forward != name:
            raise SpecError(f"stage '{st.name}' trains '{name}' through model '{st.forward}': training '{name}' "
                            f"alone needs stages that train it through itself", ("stages", i, "forward"))
    alone = spec.baseline.alone_name
    if alone in models:
        raise SpecError(f"the copy trained alone is named '{alone}', which is already a model of the spec", where)


def check_dataset(registry: Registry, name: str, args: BaseModel, where: tuple[str | int, ...] = ("data",)) -> None:
    """A dataset may register ``check=fn(args)`` for what its schema cannot see (disk, memory, speakers,
    packages); ``where`` is the key path of the dataset's arguments in the spec."""
    entry = registry.get("dataset", name)
    check = entry.extra.get("check")
    if check is None:
        return
    try:
        check(args)
    except SpecError as e:
        raise SpecError(e.message, (*where, *e.path)) from None
    except UserError as e:
        raise SpecError(str(e), where) from None
    except (Exception, SystemExit) as e:
        raise PluginError(name, "check", e, action="failed in check()", package=entry.package,
                          subject=f"dataset '{name}'") from e


def check_checkpoint(loaded: LoadedSpec, registry: Registry, name: str, info: dict[str, Any]) -> None:
    """A model's ``checkpoint`` must be a readable state dict that fits the model (checked on the meta
    device when the model can be built from what is known before the data exists)."""
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


def check_model_data(loaded: LoadedSpec, registry: Registry, info: dict[str, Any]) -> None:
    """Refuse models whose family says the spec's data does not fit them (``check_data=fn(args, info)`` on its
    registry entry: a shipped model trained on other units or features), at the model's key path (below it where
    the check raises a :class:`SpecError` with a path)."""
    for name, ms in loaded.spec.all_models().items():
        check = registry.get("model", ms.name).extra.get("check_data")
        if check is None:
            continue
        where = (name,) if name in ("teacher", "student") else ("models", name)
        try:
            check(loaded.model_args[name], info)
        except SpecError as e:  # at a key of the model's own (``path`` below it)
            raise SpecError(e.message, where + e.path) from None
        except UserError as e:
            raise SpecError(str(e), where) from None


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

    def require_batch_keys(self, args: Any, *fields: str) -> None:
        """Refuse an argument among ``fields`` of ``args`` that names no key of this stage's batches (when the
        data says its keys), at that argument."""
        keys = self.data_info().get("batch_keys")
        for k in fields:
            if keys is not None and getattr(args, k) not in keys:
                raise self.error(f"'{getattr(args, k)}' is not a key of this stage's batches ({', '.join(keys)})", k)

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
        args = self.loaded.stages[self.stage_index].plugin_args
        return [(j, self.registry.get("strategy", ref.name).factory, args[j])
                for j, ref in enumerate(self.stage.plugins)]

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
            info = meta_info(self.loaded, self.registry)
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


def meta_info(loaded: LoadedSpec, registry: Registry) -> dict[str, Any]:
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
