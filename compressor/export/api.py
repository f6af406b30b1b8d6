"""``compressor export RUN_DIR [--out DIR] [--force]``: export a finished run's student."""

from __future__ import annotations

from pathlib import Path

from compressor.errors import UserError


def export_run(run_dir: Path, out_dir: Path | None = None, force: bool = False) -> Path:
    """Export the spec's export model (default ``student``) of a finished run; return the output dir.

    The files are written to a temporary directory beside ``out_dir`` (default ``RUN_DIR/export``) and
    renamed into place when complete; an existing ``out_dir`` is refused unless ``force``.
    """
    from compressor.engine import export_model, load_run
    from compressor.export.exporter import OnnxExportArgs
    from compressor.spec import ExportSpec

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "export"
    if out.exists() and not force:
        raise UserError(f"output directory {out} exists; pass --force to replace it")
    run = load_run(run_dir)
    if run.loaded.spec.export is None or run.loaded.export_args is None:
        # a spec without an export section: the onnx exporter with its defaults, on the student
        run.loaded.spec.export = ExportSpec(name="onnx")
        run.loaded.export_args = OnnxExportArgs()
    export_model(run, out, force=force)
    return out
