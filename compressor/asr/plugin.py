"""Registers the components of the ASR models and tasks: model ``rnnt_lstm``, task ``rnnt``."""

from __future__ import annotations

from compressor.asr.model import RNNTArgs, build_rnnt
from compressor.asr.task import RNNTTask
from compressor.hookspecs import hookimpl
from compressor.registry import Registry


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "rnnt_lstm", build_rnnt, args=RNNTArgs,
                 doc="Streaming LSTM RNN-T (encoder/prediction/joint networks; seed 002 Table 1 presets).",
                 reads=("features", "feature_lengths", "tokens", "token_lengths"))
    registry.add("task", RNNTTask.name, RNNTTask)
