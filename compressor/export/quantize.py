"""int8 quantization with onnxruntime: dynamic for LSTM/linear graphs, static (calibrated) for conv graphs."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx

from compressor.core.errors import UserError


def int8_name(path: Path) -> Path:
    return path.with_name(path.stem + ".int8" + path.suffix)


def has_conv(path: Path) -> bool:
    return any(node.op_type == "Conv" for node in onnx.load(str(path)).graph.node)


def quantize_dynamic_file(src: Path, dst: Path) -> Path:
    """Weights int8, activations quantized on the fly (LSTM, MatMul/Gemm)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("root").setLevel(logging.ERROR)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst


class _Reader:
    """onnxruntime CalibrationDataReader over a list of input dicts."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - not used by the MinMax calibrator
        pass


def quantize_static_file(src: Path, dst: Path, feeds: Iterable[dict[str, np.ndarray]]) -> Path:
    """Static QDQ int8 quantization, calibrated (MinMax) on ``feeds`` (real training audio)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger("root").setLevel(logging.ERROR)
    feeds = list(feeds)
    if not feeds:
        raise UserError("static int8 quantization needs calibration audio, but the train split is empty")
    pre = dst.with_name(dst.stem + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), _Reader(feeds), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        pre.unlink(missing_ok=True)
        for extra in dst.parent.glob("*.onnx.data"):
            extra.unlink(missing_ok=True)
    return dst
