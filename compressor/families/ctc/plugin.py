"""Registers the CTC family: model ``quartznet`` (seed 003, Table 1), task ``ctc`` and its export unit ``ctc``."""

from __future__ import annotations

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Registry
from compressor.families.ctc.quartznet import QuartzNetArgs, build_quartznet
from compressor.families.ctc.task import CTCTask


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "quartznet", build_quartznet, args=QuartzNetArgs,
                 doc="QuartzNet BxR CTC model (seed 003 Table 1: 15x5, 5x3; NeMo layout, blank last).",
                 reads=("features", "feature_lengths"))
    registry.add("task", CTCTask.name, CTCTask)
    registry.add("export_unit", "ctc", "compressor.families.ctc.export:CTCExport", order=20,
                 doc="CTC models (forward_export) for sherpa-onnx's NeMo CTC recognizer.")
