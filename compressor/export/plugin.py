"""Registers the components of the edge export: exporter ``onnx``.

The exporter's code (onnx, onnxruntime, sherpa-onnx) is imported when an export runs; its argument schema is
light, so ``compressor plugins`` and ``validate`` do not wait for those libraries.
"""

from __future__ import annotations

from compressor.export.args import OnnxExportArgs
from compressor.hookspecs import hookimpl
from compressor.registry import Registry


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("exporter", "onnx", "compressor.export.exporter:OnnxExporter", args=OnnxExportArgs,
                 doc="ONNX for sherpa-onnx/onnxruntime (RNN-T, CTC, classifiers): parity, int8, latency.")
