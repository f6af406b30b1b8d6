"""Registers the CTC family: model ``quartznet`` (seed 003, Table 1) and task ``ctc``."""

from __future__ import annotations

from compressor.asr.ctc import CTCTask
from compressor.asr.quartznet import QuartzNetArgs, build_quartznet
from compressor.hookspecs import hookimpl
from compressor.registry import Registry


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "quartznet", build_quartznet, args=QuartzNetArgs,
                 doc="QuartzNet BxR CTC model (seed 003 Table 1: 15x5, 5x3; NeMo layout, blank last).",
                 reads=("features", "feature_lengths"))
    registry.add("task", CTCTask.name, CTCTask)
