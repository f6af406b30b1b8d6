"""Registers the components of the edge export (exporter ``onnx``) and writes every export's manifest.

The exporter's code (onnx, onnxruntime, sherpa-onnx) is imported when an export runs; its argument schema is
light, so ``compressor plugins`` and ``validate`` do not wait for those libraries.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Registry
from compressor.export.api import write_manifest
from compressor.export.args import OnnxExportArgs
from compressor.export.base import ExportJob


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("exporter", "onnx", "compressor.export.exporter:OnnxExporter", args=OnnxExportArgs,
                 doc="ONNX for sherpa-onnx/onnxruntime (RNN-T, CTC, classifiers): parity, int8, latency.")


@hookimpl(wrapper=True, tryfirst=True)
def compressor_export(ctx: ExportJob, out_dir: Path) -> Generator[None, list[Path], list[Path]]:
    """Around every plugin's export artefacts: list all the export's files in ``export_manifest.json``, last."""
    written = yield
    write_manifest(out_dir, ctx.run_dir, ctx.model_name, ctx.exporter)
    return written
