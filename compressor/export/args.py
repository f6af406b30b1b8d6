"""The arguments of the ``onnx`` exporter, apart from its code: validating a spec and listing plugins read
them without importing onnx, onnxruntime or sherpa-onnx (the exporter itself loads on first use)."""

from __future__ import annotations

from pydantic import Field

from compressor.core.registry import Args


class OnnxExportArgs(Args):
    """Arguments of the ``onnx`` exporter (spec ``export: {name: onnx, ...}``)."""

    opset: int = Field(default=17, ge=11, le=21)
    parity_atol: float = Field(default=1e-3, gt=0, description="max |onnxruntime - PyTorch| allowed")
    parity_batch_sizes: list[int] = Field(default_factory=lambda: [1, 3, 8], min_length=1)
    decode_utterances: int = Field(default=40, ge=1, description="test utterances decoded by sherpa-onnx")
    min_transcript_match: float = Field(default=0.9, ge=0, le=1,
                                        description="required rate of sherpa-onnx == PyTorch transcripts")
    int8: bool = True
    int8_tolerance: float = Field(default=0.02, ge=0,
                                  description="max WER increase (ASR) / accuracy drop (classifier) of int8")
    calibration_utterances: int = Field(default=32, ge=1, description="train utterances for static int8")
    valid_utterances: int = Field(default=40, ge=1, description="valid utterances for the int8 guard")
    bench_utterances: int = Field(default=8, ge=1)
    threads: int = Field(default=1, ge=1, description="threads for the latency report")
    streaming: bool = Field(default=True, description="also export a streaming RNN-T encoder (online)")
    chunk_frames: int = Field(default=24, ge=1, description="feature frames per streaming chunk "
                                                           "(rounded up to the frame stacking)")
