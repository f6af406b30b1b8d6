"""Registers the RNN-T family: model ``rnnt_lstm``, task ``rnnt`` and its export unit ``rnnt``."""

from __future__ import annotations

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Registry
from compressor.families.rnnt.model import RNNTArgs, build_rnnt
from compressor.families.rnnt.task import RNNTTask


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "rnnt_lstm", build_rnnt, args=RNNTArgs,
                 doc="Streaming LSTM RNN-T (encoder/prediction/joint networks; seed 002 Table 1 presets).",
                 reads=("features", "feature_lengths", "tokens", "token_lengths"))
    registry.add("task", RNNTTask.name, RNNTTask)
    registry.add("export_unit", "rnnt", "compressor.families.rnnt.export:RNNTExport", order=10,
                 doc="RNN-T models (encode/predict/join) for sherpa-onnx's NeMo transducer, offline and streaming.")
