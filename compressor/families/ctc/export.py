"""CTC models (``quartznet``) as sherpa-onnx NeMo CTC models.

``model.onnx`` (``from_nemo_ctc``, checked against sherpa-onnx 2.x ``offline-nemo-enc-dec-ctc-model.cc``):
``audio_signal`` (N, 80, T) float, ``length`` (N,) int64 -> ``logprobs`` (N, T', V), ``logprobs_length`` (N,).
Metadata ``vocab_size`` (with the blank), ``subsampling_factor``, ``normalize_type``. A model qualifies by
having ``forward_export(audio_signal, length)`` and ``output_lengths(length)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressor.export.family import Artefact
from compressor.export.graphs import GraphFile
from compressor.families.asr.sherpa_export import SherpaASRExport


class CTCGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio_signal: torch.Tensor, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_export(audio_signal, length), self.model.output_lengths(length)


class CTCExport(SherpaASRExport):
    """CTC models for ``sherpa_onnx.OfflineRecognizer.from_nemo_ctc``."""

    name = "ctc"
    offline_frontend = "nemo_ctc"
    model_type = "nemo_ctc"

    @classmethod
    def detect(cls, model: nn.Module, model_ref: dict[str, Any], task_name: str) -> bool:
        return hasattr(model, "forward_export") and hasattr(model, "output_lengths")

    def graphs(self) -> list[GraphFile]:
        t = 101
        return [GraphFile(
            "model.onnx", CTCGraph(self.model),
            (torch.randn(2, self.feature_dim, t), torch.tensor([t, t - 9], dtype=torch.int64)),
            ["audio_signal", "length"], ["logprobs", "logprobs_length"],
            {"audio_signal": {0: "N", 2: "T"}, "length": {0: "N"}, "logprobs": {0: "N", 1: "T_out"},
             "logprobs_length": {0: "N"}},
            {"vocab_size": str(int(self.model.vocab_size)),
             "subsampling_factor": str(int(self.model.subsampling_factor)),
             "normalize_type": self.normalize_type, "feat_dim": str(self.feature_dim),
             "model_type": "EncDecCTCModelBPE", "comment": "exported by compressor (CTC)"})]

    def parity_inputs(self, graphs: list[GraphFile], batch: dict[str, Any], g: torch.Generator
                      ) -> dict[str, tuple[torch.Tensor, ...]]:
        x = batch["features"].float().transpose(1, 2).contiguous()
        return {"model.onnx": (x, batch["feature_lengths"].to(torch.int64))}

    def offline_files(self, suffix: str = "") -> dict[str, Path]:
        return {"model": self.out / f"model{suffix}.onnx"}

    def offline_call(self) -> tuple[str, dict[str, Any]]:
        return "from_nemo_ctc", {}

    def artefacts(self, report: dict[str, Any]) -> list[Artefact]:
        return [self.offline_artefact(report)]
