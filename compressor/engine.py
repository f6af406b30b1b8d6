"""Running a spec end to end: data -> models -> ordered stages -> evaluation -> export -> summary.

:func:`run_spec` is what ``compressor run`` calls. Each stage is run by
:class:`compressor.trainer.StageRunner`; between stages the engine writes a checkpoint so that
``compressor run SPEC --resume RUN_DIR`` continues a killed run where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from compressor.checkpoint import (
    load_checked,
    load_state_dict_file,
    mismatch,
    rng_state,
    save_atomic,
    set_rng_state,
    write_atomic,
)
from compressor.data.base import DataModule
from compressor.errors import (
    PluginError,
    SpecError,
    UserError,
    did_you_mean,
    disk_error,
    raise_disk_error,
)
from compressor.export.run import export_model
from compressor.interrupts import deferred, signal_behind
from compressor.plugins import Plugins, get_plugins
from compressor.progress import Progress, duration, format_metrics, say
from compressor.resume import open_resume, spec_stamp
from compressor.rundir import (
    SPEC_FILE,
    MetricsWriter,
    RunLock,
    environment,
    new_run_dir,
)
from compressor.spec import LoadedSpec, check_splits, dump_spec, load_spec
from compressor.task import Task
from compressor.threads import configure_threads
from compressor.trainer import StageRunner, stage_budget


def cache_dir() -> Path:
    return Path(os.environ.get("COMPRESSOR_CACHE", Path.home() / ".cache" / "compressor"))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device is 'cuda' but no CUDA device is available")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", 0))
    return torch.device("cuda", local)


def pick_precision(choice: str, device: torch.device) -> str:
    if device.type != "cuda":
        return "fp32"
    if choice == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return choice


def _component(entry: Any, build: Callable[[], Any]) -> Any:
    """Build a registered component; a failure that is not the user's names the component and its package."""
    try:
        return build()
    except UserError:
        raise
    except (Exception, SystemExit) as e:
        raise PluginError(entry.name, "build", e, action="failed to build", package=entry.package,
                          subject=f"{entry.kind} '{entry.name}'") from e


def build_data(loaded: LoadedSpec, plugins: Plugins) -> DataModule:
    entry = plugins.registry.get("dataset", loaded.spec.data.name)
    data = _component(entry, lambda: entry.factory(loaded.data_args, cache_dir=cache_dir(), seed=loaded.spec.seed))
    request_model_inputs(loaded, plugins.registry, data)
    return data


def request_model_inputs(loaded: LoadedSpec, registry: Any, data: DataModule) -> None:
    """Ask the data for the on-request batch keys (waveforms) that some model of the spec reads."""
    from compressor.spec import model_reads

    keys: set[str] = set()
    for name in loaded.spec.all_models():
        keys.update(model_reads(registry, loaded, name, optional=True) or ())
    if keys:
        data.request(keys)


def build_task(loaded: LoadedSpec, plugins: Plugins, data: DataModule) -> Task:
    entry = plugins.registry.get("task", loaded.spec.task.name)
    return _component(entry, lambda: entry.factory(loaded.task_args, data.info))


def build_models(loaded: LoadedSpec, plugins: Plugins, data: DataModule,
                 init_reports: dict[str, Any] | None = None, pretrained: dict[str, Path] | None = None,
                 only: list[str] | None = None, load_checkpoints: bool = True) -> dict[str, nn.Module]:
    """Build every model of the spec (seeded, so initial weights are reproducible) and load checkpoints.

    With ``init_reports`` (a dict to fill), models with ``init_from`` load their matching weights (from the
    run directories in ``pretrained`` for ``init_from.spec``) and their reports land in it. ``only`` builds
    just those models (the others are not touched); ``load_checkpoints=False`` leaves ``checkpoint:`` files
    unread (a finished run's final weights replace them).
    """
    from compressor import init_from

    models: dict[str, nn.Module] = {}
    for i, (name, ms) in enumerate(loaded.spec.all_models().items()):
        if only is not None and name not in only:
            continue
        torch.manual_seed(loaded.spec.seed * 1000 + i)
        entry = plugins.registry.get("model", ms.name)
        model = _component(entry, lambda e=entry, n=name: e.factory(loaded.model_args[n], info=data.info))
        if ms.init_from is not None and init_reports is not None:
            init_reports[name] = init_from.apply(model, name, ms.init_from, loaded.file,
                                                 (pretrained or {}).get(name))
        if ms.checkpoint and load_checkpoints:
            state = load_state_dict_file(Path(ms.checkpoint).expanduser())
            problem = mismatch(model, state)
            if problem:
                raise UserError(f"{loaded.file}: {name}.checkpoint {ms.checkpoint} does not match the "
                                f"{name} model of the spec ({ms.name}): {problem}")
            model.load_state_dict(state)
        models[name] = model
    return models


@dataclass
class Run:
    """Everything one run shares across its stages."""

    loaded: LoadedSpec
    plugins: Plugins
    run_dir: Path
    device: torch.device
    precision: str
    data: DataModule
    task: Task
    models: dict[str, nn.Module]
    rank: int = 0
    world_size: int = 1
    metrics: MetricsWriter | None = None
    results: dict[str, Any] = field(default_factory=lambda: {"stages": [], "final": {}})
    _stage_data: dict[str, DataModule] = field(default_factory=dict)

    def data_for(self, index: int) -> DataModule:
        """The data stage ``index`` trains on: its own ``data:`` (built once, shared by stages that name the
        same dataset and arguments) or the spec's."""
        if self.loaded.spec.stages[index].data is None:
            return self.data
        return stage_data(self.loaded, self.plugins, index, self._stage_data)

    def task_for(self, index: int) -> Task:
        """The task stage ``index`` runs: its own ``task:`` or the spec's, built on that stage's data."""
        st = self.loaded.spec.stages[index]
        if st.task is None and st.data is None:
            return self.task
        name, args = self.loaded.stage_task(index)
        return self.plugins.registry.get("task", name).factory(args, self.data_for(index).info)
    eval_data: dict[str, Any] = field(default_factory=dict)  # named evaluation sets' data, built on first use

    @property
    def seed(self) -> int:
        return self.loaded.spec.seed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log(self, record: dict[str, Any]) -> None:
        if self.is_main and self.metrics is not None:
            self.metrics.write(record, record.get("step"))

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()


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


def stage_data(loaded: LoadedSpec, plugins: Plugins, index: int, built: dict[str, DataModule]) -> DataModule:
    """The data of stage ``index``'s own ``data:``, built once into ``built`` (keyed by dataset and arguments)."""
    name, args = loaded.stage_data(index)
    key = json.dumps([name, args.model_dump(mode="json")], sort_keys=True)
    if key not in built:
        with torch.random.fork_rng(devices=[]):  # building data must not shift the run's random stream
            built[key] = plugins.registry.get("dataset", name).factory(args, cache_dir=cache_dir(),
                                                                       seed=loaded.spec.seed)
            request_model_inputs(loaded, plugins.registry, built[key])
    return built[key]


def _preflight(loaded: LoadedSpec, plugins: Plugins, init_reports: dict[str, Any] | None = None,
               pretrained: dict[str, Path] | None = None
               ) -> tuple[DataModule, Task, dict[str, nn.Module], dict[str, DataModule]]:
    """Data, task and models, with every check that needs the real data done before a run directory exists:
    splits, model sizes with the data's facts, checkpoints that fit, each stage's step budget."""
    from compressor.limits import check_model_sizes

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
        stage_budget(data if stage.data is None else stage_data(loaded, plugins, i, built), stage, spec.seed)
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
        from compressor import init_from

        pretrained = init_from.ensure_pretrained(loaded)  # runs init_from.spec pre-training runs first
        trainer = loaded.spec.trainer
        from compressor.tracking import check_available

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
    start, mid_stage = 0, None
    if resumed and resume_state is None and run.metrics is not None:
        run.metrics.truncate_to(0)  # killed before its first checkpoint: start again from nothing
    if resume_state is not None:
        run.results = resume_state.get("results", run.results)
        start = resume_state["stage_index"]
        lines = resume_state.get("metrics_lines")
        if run.metrics is not None and isinstance(lines, int):
            run.metrics.truncate_to(lines)
        if resume_state["kind"] == "mid_stage":
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
        from compressor import eval_sets

        eval_sets.evaluate(run, "start")
    for i in range(start, len(stages)):
        if not stages[i].enabled:
            say(f"stage {i + 1}/{len(stages)} {stages[i].name}: skipped (enabled: false)", enabled=run.is_main)
            continue
        result = StageRunner(run, i).execute(mid_stage if i == start else None)
        run.results["stages"].append(result)
        if run.is_main:
            save_atomic({"kind": "stage_end", "stage_index": i + 1,
                         "models": {n: m.state_dict() for n, m in run.models.items()},
                         "rng": rng_state(), "results": run.results,
                         "metrics_lines": run.metrics.count if run.metrics is not None else None,
                         **spec_stamp(run.loaded.raw)},
                        run.run_dir / "checkpoints" / "last.pt")
    if run.is_main:
        _finish(run)
    if run.world_size > 1:
        dist.barrier()


def untrained_models(spec: Any) -> list[str]:
    """Models whose training was switched off: every stage that trains them is disabled (``enabled: false``)
    and they load no weights (``checkpoint``, ``init_from``). They are as initialised, so they are neither
    evaluated nor reported beside the others, nor used as an export's reference. A model no stage trains
    (a pre-trained, frozen teacher) is not among them."""
    out = []
    for name, ms in spec.all_models().items():
        stages = [st for st in spec.stages if name in st.train]
        if stages and not any(st.enabled for st in stages) and ms.checkpoint is None and ms.init_from is None:
            out.append(name)
    return out


def _finish(run: Run) -> None:
    """Final evaluation, final weights, export, plots and summary, then ``final/COMPLETE`` (main process only)."""
    from compressor.plots import write_plots
    from compressor.summary import write_summary

    with deferred():  # a signal inside a compiled module's import turns into ImportError: hold it until after
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    spec = run.loaded.spec
    final = run.results["final"]
    untrained = untrained_models(spec)
    run.results["untrained"] = untrained
    run.results["restated_metrics"] = sorted(run.task.restated_metrics)  # left out of the printed tables
    for name in spec.evaluate.models:
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
    from compressor import eval_sets

    eval_sets.evaluate(run, "final")
    final_dir = run.run_dir / "final"
    final_dir.mkdir(exist_ok=True)
    from compressor.describe import write_description

    for name, model in run.models.items():
        save_atomic(model.state_dict(), final_dir / f"{name}.pt")
        write_description(final_dir / f"{name}.pt", spec.all_models()[name].name,
                          run.loaded.model_args[name].model_dump(mode="json"), run.data.info, spec.task.name)
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
    :func:`compressor.threads.configure_threads`).

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
    names = list(loaded.spec.all_models())
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
    from compressor.describe import LazyData, complete, described_info, load_described, read_description

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
            model = _component(plugins.registry.get("model", desc["family"]),
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
