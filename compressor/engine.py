"""Running a spec end to end: data -> models -> ordered stages -> evaluation -> export -> summary.

:func:`run_spec` is what ``compressor run`` calls. Each stage is run by
:class:`compressor.trainer.StageRunner`; between stages the engine writes a checkpoint so that
``compressor run SPEC --resume RUN_DIR`` continues a killed run where it stopped.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from compressor.checkpoint import load_checkpoint, load_state_dict_file, rng_state, save_atomic, set_rng_state
from compressor.data.base import DataModule
from compressor.errors import UserError
from compressor.plugins import Plugins, get_plugins
from compressor.rundir import MetricsWriter, environment, new_run_dir
from compressor.spec import LoadedSpec, dump_spec, load_spec
from compressor.task import Task
from compressor.trainer import StageRunner


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


def build_data(loaded: LoadedSpec, plugins: Plugins) -> DataModule:
    entry = plugins.registry.get("dataset", loaded.spec.data.name)
    return entry.factory(loaded.data_args, cache_dir=cache_dir(), seed=loaded.spec.seed)


def build_task(loaded: LoadedSpec, plugins: Plugins, data: DataModule) -> Task:
    entry = plugins.registry.get("task", loaded.spec.task.name)
    return entry.factory(loaded.task_args, data.info)


def build_models(loaded: LoadedSpec, plugins: Plugins, data: DataModule,
                 init_reports: dict[str, Any] | None = None, pretrained: dict[str, Path] | None = None
                 ) -> dict[str, nn.Module]:
    """Build every model of the spec (seeded, so initial weights are reproducible) and load checkpoints.

    With ``init_reports`` (a dict to fill), models with ``init_from`` load their matching weights (from the
    run directories in ``pretrained`` for ``init_from.spec``) and their reports land in it.
    """
    from compressor import init_from

    models: dict[str, nn.Module] = {}
    for i, (name, ms) in enumerate(loaded.spec.all_models().items()):
        torch.manual_seed(loaded.spec.seed * 1000 + i)
        entry = plugins.registry.get("model", ms.name)
        model = entry.factory(loaded.model_args[name], info=data.info)
        if ms.init_from is not None and init_reports is not None:
            init_reports[name] = init_from.apply(model, name, ms.init_from, loaded.file,
                                                 (pretrained or {}).get(name))
        if ms.checkpoint:
            state = load_state_dict_file(Path(ms.checkpoint))
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                first = str(e).splitlines()[0] if str(e) else "mismatch"
                detail = "; ".join(line.strip() for line in str(e).splitlines()[1:3])
                raise UserError(f"{loaded.file}: {name}.checkpoint {ms.checkpoint} does not match the "
                                f"{name} model of the spec ({ms.name}): {first} {detail}") from None
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


def _shared_run_dir(loaded: LoadedSpec, rank: int, world: int, resume: Path | None) -> Path:
    if resume is not None:
        return resume
    path = [str(new_run_dir(loaded.spec.output_dir, loaded.spec.name))] if rank == 0 else [""]
    if world > 1:
        dist.broadcast_object_list(path, src=0)
    return Path(path[0])


def run_spec(spec_path: str | Path, overrides: list[str] | None = None, resume: str | Path | None = None
             ) -> Path:
    """Validate and run a spec; return its run directory. Bad input raises :class:`UserError` before work."""
    plugins = get_plugins()
    resume_dir = Path(resume) if resume is not None else None
    resume_state = None
    if resume_dir is not None:
        if not (resume_dir / "resolved_spec.yaml").exists():
            raise UserError(f"--resume {resume_dir}: not a run directory (no resolved_spec.yaml)")
        if (resume_dir / "final" / "COMPLETE").exists():
            raise UserError(f"--resume {resume_dir}: this run already finished")
        loaded = load_spec(resume_dir / "resolved_spec.yaml", registry=plugins.registry)
        last = resume_dir / "checkpoints" / "last.pt"
        resume_state = load_checkpoint(last) if last.exists() else None
    else:
        loaded = load_spec(spec_path, overrides, registry=plugins.registry)
    from compressor import init_from

    pretrained = init_from.ensure_pretrained(loaded)  # runs init_from.spec pre-training runs first

    trainer = loaded.spec.trainer
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    if trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    with distributed(trainer.device) as (rank, world):
        run_dir = _shared_run_dir(loaded, rank, world, resume_dir)
        metrics = MetricsWriter(run_dir, enabled=rank == 0)
        if rank == 0 and resume_dir is None:
            (run_dir / "resolved_spec.yaml").write_text(dump_spec(loaded.raw), encoding="utf-8")
            (run_dir / "environment.json").write_text(json.dumps(environment(), indent=2), encoding="utf-8")
        torch.manual_seed(loaded.spec.seed)
        device = pick_device(trainer.device)
        data = build_data(loaded, plugins)
        task = build_task(loaded, plugins, data)
        init_reports: dict[str, Any] = {}
        models = build_models(loaded, plugins, data, init_reports, pretrained)
        for m in models.values():
            m.to(device)
        run = Run(loaded, plugins, run_dir, device, pick_precision(trainer.precision, device), data, task, models,
                  rank, world, metrics)
        if init_reports:
            run.results["init_from"] = init_reports
            if rank == 0:
                init_from.write_report(run_dir, init_reports)
        if rank == 0:
            _write_skipped(run)
        try:
            _execute(run, resume_state)
        finally:
            metrics.close()
    return run_dir


def _execute(run: Run, resume_state: dict[str, Any] | None) -> None:
    stages = run.loaded.spec.stages
    start, mid_stage = 0, None
    if resume_state is not None:
        run.results = resume_state.get("results", run.results)
        start = resume_state["stage_index"]
        if resume_state["kind"] == "mid_stage":
            mid_stage = resume_state
            if run.metrics is not None:
                run.metrics.truncate_after(start, resume_state["position"]["step"])
        else:  # a stage boundary: load the models as the previous stage handed them over
            for name, sd in resume_state["models"].items():
                run.models[name].load_state_dict(sd)
            set_rng_state(resume_state["rng"])
            if run.metrics is not None:
                run.metrics.truncate_after(start - 1, 10**12)
    elif run.loaded.spec.evaluate.before_training and run.is_main:
        from compressor import eval_sets

        eval_sets.evaluate(run, "start")
    for i in range(start, len(stages)):
        result = StageRunner(run, i).execute(mid_stage if i == start else None)
        run.results["stages"].append(result)
        if run.is_main:
            save_atomic({"kind": "stage_end", "stage_index": i + 1,
                         "models": {n: m.state_dict() for n, m in run.models.items()},
                         "rng": rng_state(), "results": run.results},
                        run.run_dir / "checkpoints" / "last.pt")
    if run.is_main:
        _finish(run)
    if run.world_size > 1:
        dist.barrier()


def _finish(run: Run) -> None:
    """Final evaluation, final weights, export, plots and summary (main process only)."""
    from compressor.plots import write_plots
    from compressor.summary import write_summary

    spec = run.loaded.spec
    final = run.results["final"]
    for name in spec.evaluate.models:
        if name not in run.models:
            continue
        model = run.models[name]
        model.eval()
        loader = run.data.loader(spec.evaluate.split, spec.stages[-1].batch_size, shuffle=False, seed=run.seed)
        metrics = run.task.evaluate(model, loader, run.device)
        final[name] = {f"{spec.evaluate.split}/{k}": v for k, v in metrics.items()}
        run.log({"type": "final", "model": name, **final[name]})
    from compressor import eval_sets

    eval_sets.evaluate(run, "final")
    final_dir = run.run_dir / "final"
    final_dir.mkdir(exist_ok=True)
    for name, model in run.models.items():
        save_atomic(model.state_dict(), final_dir / f"{name}.pt")
    run.results["parameters"] = {n: count_parameters(m) for n, m in run.models.items()}
    export_md = ""
    if spec.export is not None and spec.export.enabled and run.loaded.export_args is not None:
        exported = export_model(run, run.run_dir / "export", force=True)
        export_md = exported.summary_md
        run.results["export"] = {"files": [str(f) for f in exported.files], "report": exported.report}
    (final_dir / "COMPLETE").write_text(json.dumps(run.results, indent=2, default=str), encoding="utf-8")
    write_plots(run.run_dir)
    write_summary(run.run_dir, run.loaded, run.results, export_md)


def export_model(run: Any, out_dir: Path, force: bool = False) -> Any:
    """Run the spec's exporter on its export model, writing atomically into ``out_dir``."""
    from compressor.export.base import ExportJob

    spec = run.loaded.spec
    if spec.export is None or run.loaded.export_args is None:
        raise UserError(f"{run.loaded.file}: the spec has no enabled 'export' section")
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not force:
            raise UserError(f"output directory {out_dir} exists; pass --force to replace it")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    name = spec.export.model
    model = copy.deepcopy(run.models[name]).cpu().eval()
    teacher = run.models.get("teacher")
    job = ExportJob(
        model=model, model_name=name, model_ref=dict(spec.all_models()[name].model_dump(exclude_none=True)),
        task=run.task, data=run.data, out_dir=tmp, run_dir=run.run_dir,
        teacher=copy.deepcopy(teacher).cpu().eval() if teacher is not None else None,
        args=run.loaded.export_args,
    )
    exporter = run.plugins.registry.get("exporter", spec.export.name).factory(run.loaded.export_args)
    try:
        result = exporter.export(job)
        run.plugins.call("compressor_export", ctx=None, model=model, out_dir=tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    result.files = [out_dir / Path(f).relative_to(tmp) for f in result.files]
    return result


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


def load_run(run_dir: str | Path) -> FinishedRun:
    """Load a finished run directory (``final/COMPLETE`` present) for evaluation or export."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    spec_file = run_dir / "resolved_spec.yaml"
    if not spec_file.exists():
        raise UserError(f"{run_dir} is not a run directory (no resolved_spec.yaml)")
    if not (run_dir / "final" / "COMPLETE").exists():
        raise UserError(f"{run_dir} has no finished student (final/COMPLETE is missing: the run did not finish; "
                        f"continue it with 'compressor run {spec_file} --resume {run_dir}')")
    plugins = get_plugins()
    loaded = load_spec(spec_file, registry=plugins.registry)
    data = build_data(loaded, plugins)
    task = build_task(loaded, plugins, data)
    models = build_models(loaded, plugins, data)
    for name, model in models.items():
        path = run_dir / "final" / f"{name}.pt"
        if not path.exists():
            raise UserError(f"{run_dir}: final/{name}.pt is missing")
        try:
            model.load_state_dict(load_state_dict_file(path))
        except RuntimeError as e:
            raise UserError(f"{path} does not match the spec's {name} model: {str(e).splitlines()[0]}") from None
        model.eval()
    return FinishedRun(loaded, plugins, run_dir, data, task, models)


def evaluate_run(run_dir: str | Path, split: str = "test", models: list[str] | None = None
                 ) -> dict[str, dict[str, float]]:
    run = load_run(run_dir)
    out = {}
    for name in models or list(run.models):
        if name not in run.models:
            raise UserError(f"no model '{name}' in {run_dir} (models: {', '.join(run.models)})")
        bs = run.loaded.spec.stages[-1].batch_size
        try:
            loader = run.data.loader(split, bs, shuffle=False, seed=run.loaded.spec.seed)
        except KeyError as e:
            raise UserError(str(e)) from None
        out[name] = run.task.evaluate(run.models[name], loader, run.device)
    return out
