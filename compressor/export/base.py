"""The exporter contract between the engine and exporter plugins (kind ``exporter``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from torch import nn

from compressor.core.task import Task
from compressor.data.base import DataModule


@dataclass
class ExportJob:
    """What the engine hands an exporter."""

    model: nn.Module  # trained model, eval mode, CPU
    model_name: str  # e.g. "student"
    model_ref: dict  # the spec's model entry, e.g. {"name": "rnnt_lstm", "preset": ...}
    task: Task
    data: DataModule  # parity batches, calibration audio, test-split decoding
    out_dir: Path  # a fresh, empty temporary directory: write here; the caller moves it into place
    run_dir: Path | None
    teacher: nn.Module | None  # for the side-by-side latency report
    args: BaseModel  # the exporter's own validated args
    exporter: str = ""  # the exporter's registered name, e.g. "onnx"


@dataclass
class ExportResult:
    files: list[Path]
    report: dict[str, Any] = field(default_factory=dict)  # parity, sizes, latency, RTF, int8 deltas
    summary_md: str = ""  # markdown section the engine appends to summary.md


class Exporter:
    """Base class of exporters: ``Exporter(args).export(job) -> ExportResult``."""

    def __init__(self, args: BaseModel) -> None:
        self.args = args

    def export(self, job: ExportJob) -> ExportResult:
        raise NotImplementedError
