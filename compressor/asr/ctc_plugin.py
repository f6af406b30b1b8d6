"""Registers the CTC model family (issue 5 needs a real CTC model): model ``conv_ctc``, task ``ctc``."""

from __future__ import annotations

from compressor.asr.ctc import ConvCTCArgs, CTCTask, build_conv_ctc
from compressor.hookspecs import hookimpl
from compressor.registry import Registry


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "conv_ctc", build_conv_ctc, args=ConvCTCArgs,
                 doc="QuartzNet-like separable-conv CTC model over fbank (NeMo layout, blank last).",
                 reads=("features", "feature_lengths"))
    registry.add("task", CTCTask.name, CTCTask)
