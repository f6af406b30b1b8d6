"""Registers the components of the edge export: exporter ``onnx``."""

from __future__ import annotations

from compressor.export.exporter import OnnxExportArgs, OnnxExporter
from compressor.hookspecs import hookimpl
from compressor.registry import Registry


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("exporter", "onnx", OnnxExporter, args=OnnxExportArgs,
                 doc="ONNX for sherpa-onnx/onnxruntime (RNN-T, CTC, classifiers): parity, int8, latency.")
