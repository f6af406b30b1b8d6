"""Registers the ONNX teachers in sherpa-onnx's layouts: ``onnx_transducer``, ``onnx_whisper``, ``onnx_ctc``."""

from __future__ import annotations

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Registry
from compressor.external.onnx_sherpa import OnnxTeacherArgs, build_onnx_ctc, build_onnx_transducer, units_of
from compressor.external.onnx_whisper import OnnxWhisperArgs, build_onnx_whisper


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "onnx_transducer", build_onnx_transducer, args=OnnxTeacherArgs, units=units_of,
                 doc="Teacher: a NeMo-style transducer in sherpa-onnx's layout (encoder/decoder/joiner.onnx + "
                     "tokens.txt; any compressor RNN-T export), run by onnxruntime.",
                 reads=("features", "feature_lengths", "tokens", "token_lengths"))
    registry.add("model", "onnx_whisper", build_onnx_whisper, args=OnnxWhisperArgs,
                 doc="Teacher: a Whisper in sherpa-onnx's layout (<name>-encoder.onnx, <name>-decoder.onnx, "
                     "<name>-tokens.txt), run by onnxruntime: greedy transcripts with confidence, for sequence_kd.",
                 reads=(), not_evaluable="gives transcripts of audio files, not outputs on batches: leave it out of "
                                         "evaluate.models and measure it with 'compressor teacher eval SPEC'")
    registry.add("model", "onnx_ctc", build_onnx_ctc, args=OnnxTeacherArgs, units=units_of,
                 doc="Teacher: a NeMo CTC model.onnx + tokens.txt in sherpa-onnx's layout (any compressor CTC "
                     "export), run by onnxruntime: per-frame log-probabilities and greedy transcripts.",
                 reads=("features", "feature_lengths"))
