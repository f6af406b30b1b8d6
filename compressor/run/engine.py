"""Running a spec end to end: data -> models -> ordered stages -> (the student alone, :mod:`compressor.run.alone`)
-> evaluation -> export -> summary.

:func:`run_spec` is what ``compressor run`` calls. Each stage is run by
:class:`compressor.run.trainer.StageRunner`; between stages the engine writes a checkpoint so that
``compressor run SPEC --resume RUN_DIR`` continues a killed run where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from compressor.core.checkpoint import (
    load_checked,
    save_atomic,
    set_rng_state,
    write_atomic,
)
from compressor.core.describe import DESCRIBED_AS, write_description
from compressor.core.errors import (
    SpecError,
    UserError,
    disk_error,
    raise_disk_error,
)
from compressor.core.interrupts import deferred, signal_behind
from compressor.core.limits import check_model_sizes
from compressor.core.progress import Progress, duration, format_metrics, say
from compressor.core.rundir import SPEC_FILE, RunLock, new_run_dir
from compressor.core.task import Task
from compressor.core.threads import configure_threads
from compressor.data.base import DataModule
from compressor.export.run import export_model
from compressor.plugins import Plugins, get_plugins
from compressor.run import eval_sets, init_from
from compressor.run.alone import ALONE_PHASE, train_alone
from compressor.run.components import (
    Run,
    build_data,
    build_models,
    build_task,
    count_parameters,
    pick_device,
    pick_precision,
    stage_data,
    untrained_models,
)
from compressor.run.plots import write_plots
from compressor.run.records import MetricsWriter, environment
from compressor.run.resume import open_resume
from compressor.run.summary import write_summary
from compressor.run.tracking import check_available
from compressor.run.trainer import StageRunner, labels_audio, save_stage_end, stage_budget
from compressor.spec import LoadedSpec, check_splits, dump_spec, load_spec


@contextlib.contextmanager
def distributed(device_choice: str) -> Iterator[tuple[int, int]]:
    """Initialise torch.distributed when launched by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1
        return
    use_cuda = device_choice != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()


def _shared_run_dir(loaded: LoadedSpec, rank: int, world: int, resume: Path | None) -> tuple[Path, list[Path]]:
    """The run directory (created by rank 0 for a new run) and the folders creating it made."""
    if resume is not None:
        return resume, []
    created: list[Path] = []
    if rank == 0:
        base = Path(loaded.spec.output_dir).expanduser()
        created = [p for p in (base / loaded.spec.name, base) if not p.exists()]
    path = [str(new_run_dir(loaded.spec.output_dir, loaded.spec.name))] if rank == 0 else [""]
    if world > 1:
        dist.broadcast_object_list(path, src=0)
    return Path(path[0]), created


def _preflight(loaded: LoadedSpec, plugins: Plugins, init_reports: dict[str, Any] | None = None,
               pretrained: dict[str, Path] | None = None
               ) -> tuple[DataModule, Task, dict[str, nn.Module], dict[str, DataModule]]:
    """Data, task and models, with every check that needs the real data done before a run directory exists:
    splits, model sizes with the data's facts, checkpoints that fit, each stage's step budget."""
    spec = loaded.spec
    data = build_data(loaded, plugins)
    _say_data(spec.data.name, data)
    try:
        check_splits(spec, list(getattr(data, "datasets", {}) or data.splits))
        check_model_sizes(loaded, plugins.registry, data.info)
    except SpecError as e:
        raise SpecError(e.message, e.path, loaded.file) from None
    task = build_task(loaded, plugins, data)
    models = build_models(loaded, plugins, data, init_reports, pretrained)
    built: dict[str, DataModule] = {}
    for i, stage in enumerate(spec.stages):
        if not stage.enabled:
            continue
        stage_budget(data if stage.data is None else stage_data(loaded, plugins, i, built), stage, spec.seed,
                     labels_audio(plugins.registry, stage))
    return data, task, models, built


def _say_data(name: str, data: DataModule) -> None:
    sizes = []
    for split, ds in (getattr(data, "datasets", None) or {}).items():
        try:
            sizes.append(f"{split} {len(ds):,}")
        except TypeError:
            sizes.append(split)
    skipped = len(getattr(data, "skipped", None) or [])
    say(f"data {name}: {', '.join(sizes) or 'ready'}" + (f" ({skipped} items skipped)" if skipped else ""),
        enabled=os.environ.get("RANK", "0") == "0")


def run_spec(spec_path: str | Path | None, overrides: list[str] | None = None, resume: str | Path | None = None,
             threads: int | None = None, accept_spec_change: bool = False) -> Path:
    """Validate and run a spec; return its run directory. Bad input raises :class:`UserError` before work.

    With ``resume``, continue that killed run with the spec it started with (a ``spec_path`` or ``overrides``
    that would change it are refused). Nothing is left behind by a run that fails before its first step.
    ``threads`` (``--threads``) overrides ``trainer.threads`` for this process without changing the spec.
    ``accept_spec_change`` (``--accept-spec-change``) resumes a run whose ``resolved_spec.yaml`` was edited
    since its last checkpoint, recording the change in the run (else that is refused).
    """
    plugins = get_plugins()
    overrides = list(overrides or [])
    resume_dir = Path(resume) if resume is not None else None
    with contextlib.ExitStack() as stack:
        resume_state = None
        if resume_dir is not None:
            loaded, resume_state = open_resume(resume_dir, spec_path, overrides, plugins.registry, stack,
                                              accept_spec_change)
        elif spec_path is None:
            raise UserError("run needs a SPEC file (or --resume RUN_DIR)")
        else:
            loaded = load_spec(spec_path, overrides, registry=plugins.registry)
        pretrained = init_from.ensure_pretrained(loaded, run_spec)  # runs init_from.spec pre-training runs first
        trainer = loaded.spec.trainer
        check_available(trainer.tracking)  # before any work: a tracker whose package is missing is named
        configure_threads(threads, trainer.threads)  # capped at the CPUs there are (a resume on a smaller machine)
        if trainer.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        with distributed(trainer.device) as (rank, world):
            torch.manual_seed(loaded.spec.seed)
            device = pick_device(trainer.device)
            init_reports: dict[str, Any] = {}
            data, task, models, built = _preflight(loaded, plugins, init_reports, pretrained)
            run_dir, created = _shared_run_dir(loaded, rank, world, resume_dir)
            if rank == 0 and resume_dir is None:
                try:
                    stack.enter_context(RunLock(run_dir, "start a run in it"))
                except BaseException as e:  # a full or read-only disk: no stub run directory stays
                    _after_failure(run_dir, created, fresh=True, interrupted=False)
                    raise_disk_error(e, run_dir)
                    raise
            metrics = MetricsWriter(run_dir, enabled=rank == 0, tracking=trainer.tracking)
            try:
                if rank == 0 and resume_dir is None:
                    (run_dir / SPEC_FILE).write_text(dump_spec(loaded.raw), encoding="utf-8")
                    (run_dir / "environment.json").write_text(
                        json.dumps(environment(device, pick_precision(trainer.precision, device), world),
                                   indent=2), encoding="utf-8")
                metrics.log_spec(loaded.raw, dump_spec(loaded.raw))  # to the experiment trackers
                for m in models.values():
                    m.to(device)
                run = Run(loaded, plugins, run_dir, device, pick_precision(trainer.precision, device), data, task,
                          models, rank, world, metrics)
                run._stage_data.update(built)
                run.pretrained = dict(pretrained or {})
                if init_reports:
                    run.results["init_from"] = init_reports
                    if rank == 0:
                        init_from.write_report(run_dir, init_reports)
                if rank == 0:
                    _write_skipped(run)
                _execute(run, resume_state, resumed=resume_dir is not None)
            except BaseException as e:
                with contextlib.suppress(OSError):  # a full disk must not hide why the run stopped
                    metrics.close()
                disk = disk_error(e, run_dir)
                if rank == 0:
                    _after_failure(run_dir, created, fresh=resume_dir is None,
                                   interrupted=signal_behind(e) is not None or disk is not None)
                raise_disk_error(e, run_dir)
                raise
            metrics.close()
    return run_dir


def _after_failure(run_dir: Path, created: list[Path], fresh: bool, interrupted: bool) -> None:
    """A new run that failed before its first step leaves nothing; one that made progress stays resumable."""
    progressed = (run_dir / "checkpoints" / "last.pt").exists() or (
        (run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").stat().st_size > 0)
    if fresh and not progressed:
        shutil.rmtree(run_dir, ignore_errors=True)
        for folder in created:  # the spec-name folder, the output directory: only if this run made them
            with contextlib.suppress(OSError):
                folder.rmdir()
    elif interrupted and not (run_dir / "final" / "COMPLETE").exists():
        print(f"the run can continue: compressor run --resume {run_dir}", file=sys.stderr)


def _execute(run: Run, resume_state: dict[str, Any] | None, resumed: bool = False) -> None:
    stages = run.loaded.spec.stages
    start, mid_stage, alone_state = 0, None, None
    if resumed and resume_state is None and run.metrics is not None:
        run.metrics.truncate_to(0)  # killed before its first checkpoint: start again from nothing
    if resume_state is not None:
        run.results = resume_state.get("results", run.results)
        start = resume_state["stage_index"]
        lines = resume_state.get("metrics_lines")
        if run.metrics is not None and isinstance(lines, int):
            run.metrics.truncate_to(lines)
        if resume_state.get("phase") == ALONE_PHASE:  # the stages are done: the model trains alone
            start, alone_state = len(stages), resume_state
            for name, sd in resume_state["trained"].items():
                load_checked(run.models[name], sd, f"{run.run_dir}/checkpoints/last.pt ({name})")
        elif resume_state["kind"] == "mid_stage":
            mid_stage = resume_state
            if run.metrics is not None and not isinstance(lines, int):
                run.metrics.truncate_after(start, resume_state["position"]["step"])
        else:  # a stage boundary: load the models as the previous stage handed them over
            for name, sd in resume_state["models"].items():
                if name not in run.models:
                    raise UserError(f"{run.run_dir}/checkpoints/last.pt has model '{name}' that the spec does not "
                                    f"build")
                load_checked(run.models[name], sd, f"{run.run_dir}/checkpoints/last.pt ({name})")
            set_rng_state(resume_state["rng"])
            if run.metrics is not None and not isinstance(lines, int):
                run.metrics.truncate_after(start - 1, 10**12)
    elif run.loaded.spec.evaluate.before_training and run.is_main:
        eval_sets.evaluate(run, "start")
    for i in range(start, len(stages)):
        if not stages[i].enabled:
            say(f"stage {i + 1}/{len(stages)} {stages[i].name}: skipped (enabled: false)", enabled=run.is_main)
            continue
        result = StageRunner(run, i).execute(mid_stage if i == start else None)
        run.results["stages"].append(result)
        save_stage_end(run, i + 1)
    if run.loaded.spec.trained_alone():
        train_alone(run, alone_state)
    if run.is_main:
        _finish(run)
    if run.world_size > 1:
        dist.barrier()


def _finish(run: Run) -> None:
    """Final evaluation, final weights, export, plots and summary, then ``final/COMPLETE`` (main process only)."""

    with deferred():  # a signal inside a compiled module's import turns into ImportError: hold it until after
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    spec = run.loaded.spec
    final = run.results["final"]
    untrained = untrained_models(spec)
    run.results["untrained"] = untrained
    run.results["restated_metrics"] = sorted(run.task.restated_metrics)  # left out of the printed tables
    alone = spec.trained_alone()
    for name in [*spec.evaluate.models, *alone]:
        if name not in run.models:
            continue
        if name in untrained:
            say(f"final evaluation: {name} skipped (untrained: the stages that train it are disabled)")
            continue
        model = run.models[name]
        model.eval()
        final[name] = {}
        for split in [spec.evaluate.split, *spec.evaluate.extra_splits]:
            metrics = evaluate_model(run.task, run.data, model, name, split, spec.stages[-1].batch_size, run.seed,
                                     run.device, "final evaluation")
            final[name].update({f"{split}/{k}": v for k, v in metrics.items()})
            run.results.setdefault("final_split_utterances", {})[split] = len(run.data.dataset(split))
        run.results["final_utterances"] = len(run.data.dataset(spec.evaluate.split))
        run.log({"type": "final", "model": name, **final[name]})
    eval_sets.evaluate(run, "final")
    final_dir = run.run_dir / "final"
    final_dir.mkdir(exist_ok=True)
    for name, model in run.models.items():
        save_atomic(model.state_dict(), final_dir / f"{name}.pt")
        source = alone.get(name, name)  # a copy trained alone is described as the model it copies
        own = getattr(model, DESCRIBED_AS, None)  # a shipped model is described as its own family
        if own is not None:
            write_description(final_dir / f"{name}.pt", own["family"], own["args"], own["info"], spec.task.name)
        else:
            write_description(final_dir / f"{name}.pt", spec.all_models()[source].name,
                              run.loaded.model_args[source].model_dump(mode="json"), run.data.info, spec.task.name)
    run.results["parameters"] = {n: count_parameters(m) for n, m in run.models.items()}
    export_md = ""
    if spec.export is not None and spec.export.enabled and run.loaded.export_args is not None:
        exported = export_model(run, run.run_dir / "export", force=True, untrained=untrained)
        export_md = exported.summary_md
        run.results["export"] = {"files": [str(f) for f in exported.files], "report": exported.report}
    plots = write_plots(run.run_dir)
    if run.metrics is not None:
        run.metrics.log_plots(plots)
    write_summary(run.run_dir, run.loaded, run.results, export_md)
    # last: "finished" holds only once everything above is on disk; a signal before it leaves a resumable run
    write_atomic(final_dir / "COMPLETE", json.dumps(run.results, indent=2, default=str))


def evaluate_model(task: Task, data: DataModule, model: nn.Module, name: str, split: str, batch_size: int,
                   seed: int, device: torch.device, what: str = "evaluation") -> dict[str, float]:
    """``task.evaluate`` on a split, showing progress per batch and a line with the metrics."""
    loader = data.loader(split, batch_size, shuffle=False, seed=seed)
    total = data.num_batches(split, batch_size, shuffle=False, seed=seed, epoch=0)
    p = Progress(f"{what}: {name} on {split}", total=total, unit="batch")
    try:
        metrics = task.evaluate(model, _counted(loader, p), device)
    except BaseException:
        p.close(silent=True)
        raise
    main = getattr(task, "main_metric", None)
    p.close(f"{format_metrics({k: metrics[k] for k in sorted(metrics, key=lambda k: k != main)})} "
            f"({duration(p.elapsed)})")
    return metrics


def _counted(batches: Any, progress: Progress) -> Iterator[Any]:
    for batch in batches:
        yield batch
        progress.update()


def _write_skipped(run: Run) -> None:
    skipped = getattr(run.data, "skipped", None)
    if skipped:
        with open(run.run_dir / "skipped.jsonl", "w", encoding="utf-8") as f:
            for item in skipped:
                f.write(json.dumps(item, default=str) + "\n")
