"""Registers the teachers from outside the project: ``whisper_ct2``, ``onnx_transducer``, ``onnx_ctc``.

faster-whisper and onnxruntime are imported on first use, not by ``compressor plugins``."""

from __future__ import annotations

from compressor.hookspecs import hookimpl
from compressor.registry import Registry
from compressor.teachers.onnx_sherpa import OnnxTeacherArgs
from compressor.teachers.whisper_ct2 import WhisperCT2Args


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "whisper_ct2", "compressor.teachers.whisper_ct2:build_whisper_ct2", args=WhisperCT2Args,
                 doc="Teacher: a CTranslate2 Whisper run by faster-whisper (default: Whisper base from the "
                     "whisper extra's wheels); transcripts with confidence, for sequence_kd.", reads=(),
                 not_evaluable="gives transcripts of audio files, not outputs on batches: leave it out of "
                               "evaluate.models and measure it with 'compressor teacher eval SPEC'")
    registry.add("model", "onnx_transducer", "compressor.teachers.onnx_sherpa:build_onnx_transducer",
                 args=OnnxTeacherArgs,
                 doc="Teacher: a NeMo-style transducer in sherpa-onnx's layout (encoder/decoder/joiner.onnx + "
                     "tokens.txt; any compressor RNN-T export), run by onnxruntime.",
                 reads=("features", "feature_lengths", "tokens", "token_lengths"))
    registry.add("model", "onnx_ctc", "compressor.teachers.onnx_sherpa:build_onnx_ctc", args=OnnxTeacherArgs,
                 doc="Teacher: a NeMo CTC model.onnx + tokens.txt in sherpa-onnx's layout (any compressor CTC "
                     "export), run by onnxruntime: per-frame log-probabilities and greedy transcripts.",
                 reads=("features", "feature_lengths"))
