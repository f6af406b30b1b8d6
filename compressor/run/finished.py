"""A finished run, loaded back: its models (from their descriptions, ``final/<model>.model.json``, where it has
them), its task and its data, for ``compressor eval`` and ``compressor export``."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compressor.core.checkpoint import load_checked, load_state_dict_file
from compressor.core.describe import LazyData, complete, described_info, load_described, read_description
from compressor.core.errors import UserError, did_you_mean
from compressor.core.progress import say
from compressor.core.registry import build_component
from compressor.core.rundir import SPEC_FILE
from compressor.core.task import Task
from compressor.core.threads import configure_threads
from compressor.data.base import DataModule
from compressor.plugins import Plugins, get_plugins
from compressor.run.components import build_data, build_models, build_task
from compressor.run.engine import evaluate_model
from compressor.spec import LoadedSpec, load_spec


@dataclass
class FinishedRun:
    """A finished run loaded back: spec, data, task and models with their final weights."""

    loaded: LoadedSpec
    plugins: Plugins
    run_dir: Path
    data: DataModule
    task: Task
    models: dict[str, nn.Module]
    device: torch.device = torch.device("cpu")


def load_run(run_dir: str | Path, threads: int | None = None, models: list[str] | None = None,
             optional: list[str] | None = None, splits: list[str] | None = None) -> FinishedRun:
    """Load a finished run directory (``final/COMPLETE`` present) for evaluation or export; torch computes
    with ``threads``, else the run's ``trainer.threads``, else one thread per CPU (see
    :func:`compressor.core.threads.configure_threads`).

    Only ``models`` (default: all of the run's) and ``optional`` are built and loaded: a model not asked for is
    never read. A model in ``optional`` whose weights do not load is left out, with one line saying why.

    Models with descriptions (``final/<model>.model.json``) are built from them, and the data only when batches
    are asked of it; then speech data reads just ``splits`` when given (see
    :func:`compressor.data.speech_build.only_splits`).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    spec_file = run_dir / SPEC_FILE
    if not spec_file.exists():
        raise UserError(f"{run_dir} is not a run directory (no {SPEC_FILE})")
    if not (run_dir / "final" / "COMPLETE").exists():
        raise UserError(f"{run_dir} has no finished student (final/COMPLETE is missing: the run did not finish; "
                        f"continue it with 'compressor run --resume {run_dir}')")
    plugins = get_plugins()
    loaded = load_spec(spec_file, registry=plugins.registry, check_machine=False)
    names = list(loaded.spec.saved_models())  # with the copies trained alone (baseline)
    for name in models or []:
        if name not in names:
            raise UserError(f"--models: no model '{name}' in {run_dir}{did_you_mean(name, names)}")
    wanted = [n for n in names if models is None or n in models]
    extra = [n for n in optional or [] if n in names and n not in wanted]
    configure_threads(threads, loaded.spec.trainer.threads)
    described = _load_described(run_dir, loaded, plugins, wanted, extra, splits)
    if described is not None:
        return described
    data = build_data(loaded, plugins)
    task = build_task(loaded, plugins, data)
    built = build_models(loaded, plugins, data, only=wanted + extra, load_checkpoints=False)
    for alone, source in loaded.spec.trained_alone().items():  # built as the model it copies
        if alone in wanted + extra:
            built[alone] = build_models(loaded, plugins, data, only=[source], load_checkpoints=False)[source]
    loaded_models: dict[str, nn.Module] = {}
    for name, model in built.items():
        path = run_dir / "final" / f"{name}.pt"
        try:
            if not path.exists():
                raise UserError(f"{run_dir}: final/{name}.pt is missing")
            load_checked(model, load_state_dict_file(path), str(path))
        except UserError as e:
            if name in wanted:
                raise
            say(f"{name} not loaded, left out: {e}")
            continue
        model.eval()
        loaded_models[name] = model
    return FinishedRun(loaded, plugins, run_dir, data, task, loaded_models)


def _load_described(run_dir: Path, loaded: LoadedSpec, plugins: Plugins, wanted: list[str], extra: list[str],
                    splits: list[str] | None = None) -> FinishedRun | None:
    """A finished run loaded from its model descriptions (``final/<model>.model.json``): models and task built
    from the data facts they recorded, the data itself built only when batches are asked of it. None when a
    wanted model has no description (a run of an older version): the caller builds the data as before."""

    final = run_dir / "final"
    descriptions = {n: read_description(final / f"{n}.pt") for n in wanted}
    if not descriptions or any(d is None or not complete(d) for d in descriptions.values()):
        return None
    info = described_info(final / f"{wanted[0]}.pt", descriptions[wanted[0]])

    def build() -> DataModule:
        from compressor.data.speech_build import only_splits

        with only_splits(info, splits) if splits else contextlib.nullcontext():
            return build_data(loaded, plugins)

    data = LazyData(info, build)
    task = build_task(loaded, plugins, data)  # type: ignore[arg-type]  # a task reads the data's info only
    models: dict[str, nn.Module] = {}
    for name in wanted + extra:
        path = final / f"{name}.pt"
        try:
            desc = descriptions.get(name) or read_description(path)
            if desc is None or not complete(desc):
                raise UserError(f"{run_dir}: final/{name}.pt has no complete description ({path.stem}.model.json)")
            model = build_component(plugins.registry.get("model", desc["family"]),
                               lambda d=desc, p=path: load_described(p, d, plugins.registry, str(p)))
        except UserError as e:
            if name in wanted:
                raise
            say(f"{name} not loaded, left out: {e}")
            continue
        models[name] = model
    return FinishedRun(loaded, plugins, run_dir, data, task, models)  # type: ignore[arg-type]


def evaluate_run(run_dir: str | Path, split: str = "test", models: list[str] | None = None,
                 threads: int | None = None) -> dict[str, dict[str, float]]:
    """Metrics of a finished run's models on a split, computed with ``threads`` (``--threads``), else the spec's
    ``trainer.threads``, else one thread per CPU this process may use."""
    run = load_run(run_dir, threads, models=models or None, splits=[split])
    splits = list(getattr(run.data, "datasets", {}) or run.data.splits)
    if split not in splits:
        raise UserError(f"--split: {run_dir} has no split '{split}'{did_you_mean(split, splits)}")
    out = {}
    for name in models or list(run.models):
        out[name] = evaluate_model(run.task, run.data, run.models[name], name, split,
                                   run.loaded.spec.stages[-1].batch_size, run.loaded.spec.seed, run.device)
    return out
