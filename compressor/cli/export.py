"""``compressor export RUN_DIR``: export a model of a finished run.

The target folder is checked first (:mod:`compressor.export.api`), before torch or the run's models load; then
the run is loaded back (:func:`compressor.run.finished.load_run`, from its models' descriptions where it has them) and
handed to :func:`compressor.export.run.export_model`.
"""

from __future__ import annotations

from pathlib import Path

from compressor.core.errors import UserError
from compressor.core.rundir import RunLock, clean_stale_temporaries, is_run_dir
from compressor.export.api import check_export_target, export_model_name


def export_run(run_dir: Path, out_dir: Path | None = None, force: bool = False, threads: int | None = None,
               model: str | None = None) -> Path:
    """Export ``model`` (default: the spec's ``export.model``, else ``student``) of a finished run; return the
    output dir.

    ``out_dir`` defaults to ``RUN_DIR/export``; :mod:`compressor.export.api` says where an export may go. torch
    computes with ``threads`` (``--threads``), else the spec's ``trainer.threads``, else one per CPU.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir} is not a run directory (no resolved_spec.yaml)")
    out = check_export_target(run_dir, Path(out_dir) if out_dir is not None else run_dir / "export", force)
    # the training and export stacks load only once the target is known to be writable
    from compressor.export.args import OnnxExportArgs
    from compressor.export.run import export_model
    from compressor.run.components import untrained_models
    from compressor.run.finished import load_run
    from compressor.spec import ExportSpec

    with RunLock(run_dir, "export it"):
        clean_stale_temporaries(run_dir)
        # the exported model, and the teacher for the report's comparison rows if its weights load
        run = load_run(run_dir, threads, models=[model or export_model_name(run_dir)], optional=["teacher"])
        if run.loaded.spec.export is None or run.loaded.export_args is None:
            # a spec without an export section: the onnx exporter with its defaults
            run.loaded.spec.export = ExportSpec(name="onnx")
            run.loaded.export_args = OnnxExportArgs()
        export_model(run, out, force=force, model_name=model, untrained=untrained_models(run.loaded.spec))
    return out
