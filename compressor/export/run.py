"""Run an exporter on a model of a run, writing atomically into the export folder (see :mod:`compressor.export.api`
for where an export may go)."""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compressor.core.errors import PluginError, UserError, did_you_mean, raise_disk_error
from compressor.core.progress import Progress, duration
from compressor.core.registry import build_component
from compressor.export.api import claim_export_dir
from compressor.export.base import ExportJob, ExportResult


def export_model(run: Any, out_dir: Path, force: bool = False, model_name: str | None = None,
                 untrained: Sequence[str] = ()) -> ExportResult:
    """Run the spec's exporter on ``model_name`` (default: the spec's ``export.model``), writing atomically
    into ``out_dir``. An unknown model name is refused (exit code 2) before anything is written.

    Files are written into ``.<out>.tmp-<pid>`` beside ``out_dir`` with an ``export_manifest.json`` listing
    them, and moved into place only when complete; ``force`` replaces a previous export (recognised by its
    manifest) and nothing else. Every failure, including Ctrl-C, removes the temporary folder.

    ``run`` is a run of the engine or a finished run loaded back: its ``loaded`` spec, ``plugins``, ``run_dir``,
    ``data``, ``task`` and ``models``. ``untrained`` names the models no stage trained: a teacher among them
    is no reference for the export's comparison rows.
    """
    spec = run.loaded.spec
    if spec.export is None or run.loaded.export_args is None:
        raise UserError(f"{run.loaded.file}: the spec has no enabled 'export' section")
    name = model_name or spec.export.model
    if name not in run.models:
        raise UserError(f"--model: no model '{name}' in {run.run_dir}{did_you_mean(name, run.models)}")
    out_dir = Path(out_dir)
    tmp = claim_export_dir(out_dir, force)
    try:
        model = copy.deepcopy(run.models[name]).cpu().eval()
        teacher = run.models.get("teacher")  # the reference beside the export: a trained teacher, not itself
        if name == "teacher" or "teacher" in untrained:
            teacher = None
        job = ExportJob(
            model=model, model_name=name, model_ref=dict(spec.saved_models()[name].model_dump(exclude_none=True)),
            task=run.task, data=run.data, out_dir=tmp, run_dir=run.run_dir,
            teacher=copy.deepcopy(teacher).cpu().eval() if teacher is not None else None,
            args=run.loaded.export_args, exporter=spec.export.name,
        )
        entry = run.plugins.registry.get("exporter", spec.export.name)
        exporter = build_component(entry, lambda: entry.factory(run.loaded.export_args))
        progress = Progress(f"export ({spec.export.name}) of the {name}", announce=True)
        try:
            result = exporter.export(job)
            progress.close(f"{len(result.files)} files written and checked ({duration(progress.elapsed)})")
        except UserError:
            progress.close(silent=True)
            raise
        except (Exception, SystemExit) as e:
            progress.close(silent=True)
            raise_disk_error(e, tmp)
            raise PluginError(entry.name, "export", e, action="failed", package=entry.package,
                              subject=f"exporter '{entry.name}'") from e
        except BaseException:
            progress.close(silent=True)
            raise
        run.plugins.call("compressor_export", ctx=job, model=model, out_dir=tmp)  # the manifest is written last
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.files = [out_dir / Path(f).relative_to(tmp) for f in result.files]
    return result


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` to ``out_dir``; a previous ``out_dir`` is moved aside first and removed after."""
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except BaseException:
        if old.exists() and not out_dir.exists():
            old.rename(out_dir)
        raise
    finally:
        if old.exists() and out_dir.exists():
            shutil.rmtree(old, ignore_errors=True)

