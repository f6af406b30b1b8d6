"""The interface of one model family's export unit, and what the shared exporter asks of it.

The ``onnx`` exporter (:mod:`compressor.export.exporter`) does what every family shares: writing the graphs,
``onnx.checker``, onnxruntime-vs-PyTorch parity, the int8 guard, the latency report, the manifest and the
export's README. A family's export unit (one file in its family package: :mod:`compressor.families.rnnt.export`,
:mod:`compressor.families.ctc.export`, :mod:`compressor.families.slu.export`) supplies what differs: its graphs
and side files, the inputs its graphs take, the check that the runtime gives what PyTorch gives, the quality
metric of the int8 guard, and the artefacts a device loads (runtime, front end, the exact call). A new family is
a subclass of :class:`FamilyExport` registered as an ``export_unit`` component in the family's plugin::

    registry.add("export_unit", "my_family", "my_package.export:MyFamilyExport", doc="...")

The ``onnx`` exporter asks every registered unit's :meth:`FamilyExport.detect` in the units' ``order`` (an
``order=...`` given at registration, 0 when none: before the built-in units, which use 10, 20, 30).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from compressor.export.base import ExportJob
from compressor.export.graphs import GraphFile


@dataclass
class Figure:
    """A measured number and what it covers: which split, how many of its utterances."""

    value: float
    split: str
    utterances: int
    split_size: int

    def coverage(self) -> str:
        """``all 250 test utterances`` or ``the first 40 of 250 test utterances``."""
        if self.utterances >= self.split_size:
            return f"all {self.split_size} {self.split} utterances"
        return f"the first {self.utterances} of {self.split_size} {self.split} utterances"

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "split": self.split, "utterances": self.utterances,
                "split_size": self.split_size}


@dataclass
class Artefact:
    """One way to run the export on a device: files, runtime, the front end it computes, the exact call."""

    name: str  # "offline", "streaming", "onnxruntime"
    runtime: str  # "sherpa-onnx" or "onnxruntime"
    call: str  # e.g. "sherpa_onnx.OfflineRecognizer.from_transducer"
    files: dict[str, str]  # call argument -> file name in the export directory
    kwargs: dict[str, Any] = field(default_factory=dict)  # the call's other arguments
    model_type: str | None = None  # sherpa-onnx model_type, where the runtime has one
    frontend: str | None = None  # front end the runtime computes (or that the caller must compute)
    frontend_computed_by: str = "runtime"  # "runtime" (sherpa-onnx) or "caller" (onnxruntime: you compute it)
    matches_training: bool | None = None  # whether that front end is the one the model was trained on
    int8_files: dict[str, str] | None = None  # the same call's files for the int8 variant, when kept
    streaming: dict[str, Any] | None = None  # chunk sizes and how to feed the stream
    figures: dict[str, Figure] = field(default_factory=dict)  # e.g. {"wer": Figure(...)}
    note: str = ""

    def python_call(self, int8: bool = False, directory: str = "") -> str:
        """The call as Python source, file names relative to ``directory``."""
        files = (self.int8_files if int8 and self.int8_files else self.files)
        prefix = f"{directory.rstrip('/')}/" if directory else ""
        parts = [f"{k}={prefix + v!r}" for k, v in files.items()]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.call}({', '.join(parts)})"


class FamilyExport:
    """One model family's export unit. The exporter builds one per export: ``Unit(model, job, args)``."""

    name: ClassVar[str] = ""
    metric: ClassVar[str] = ""  # quality metric of the int8 guard: "wer" (lower is better) or "accuracy"
    higher_is_better: ClassVar[bool] = False
    check_key: ClassVar[str] = ""  # report key of :meth:`check` ("transcripts", "classification")
    #: the complete decode example copied into every export of this family
    #: (:mod:`compressor.export.decoders`): it runs from the export folder with the runtime alone
    decode_example: ClassVar[str] = ""

    def __init__(self, model: nn.Module, job: ExportJob, args: Any) -> None:
        self.model = model
        self.job = job
        self.args = args
        self.out = Path(job.out_dir)
        self.info = job.data.info
        self.feature_dim = int(self.info.get("feature_dim", 80))
        self.normalize_type = str(self.info.get("normalize_type") or "")
        self.data_frontend: str | None = self.info.get("frontend")

    @classmethod
    def detect(cls, model: nn.Module, model_ref: dict[str, Any], task_name: str) -> bool:
        """Whether this unit exports ``model``."""
        raise NotImplementedError

    # -- files ----------------------------------------------------------------------------------
    def graphs(self) -> list[GraphFile]:
        """The ONNX graphs, in write order."""
        raise NotImplementedError

    def side_files(self) -> list[Path]:
        """Files besides the graphs (``tokens.txt``, ``labels.txt``), written into ``self.out``."""
        return []

    def copy_decode_example(self) -> list[Path]:
        """:attr:`decode_example` copied into ``self.out`` (none when the family has none)."""
        if not self.decode_example:
            return []
        import shutil

        from compressor.export import decoders

        target = self.out / self.decode_example
        shutil.copyfile(Path(decoders.__file__).parent / self.decode_example, target)
        return [target]

    # -- checks ---------------------------------------------------------------------------------
    def parity_inputs(self, graphs: list[GraphFile], batch: dict[str, Any], g: torch.Generator
                      ) -> dict[str, tuple[torch.Tensor, ...]]:
        """Inputs of each graph (by file name) built from one real batch."""
        raise NotImplementedError

    def check(self) -> dict[str, Any]:
        """The runtime against PyTorch on the test split; raise a UserError when they disagree."""
        raise NotImplementedError

    def quality(self, suffix: str, split: str, limit: int) -> Figure:
        """The guard metric of the files ``<name><suffix>.onnx`` on ``split`` (the int8 guard)."""
        raise NotImplementedError

    def calibration_feed(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """Inputs of the graph for static int8 calibration from one collated training example."""
        raise NotImplementedError

    def extras(self, report: dict[str, Any]) -> list[Path]:
        """Further artefacts written after the int8 guard (the RNN-T streaming encoder); report keys added."""
        return []

    # -- description ----------------------------------------------------------------------------
    def artefacts(self, report: dict[str, Any]) -> list[Artefact]:
        """What a device loads, best-matching first."""
        raise NotImplementedError

    def manifest_fields(self) -> dict[str, Any]:
        """Family facts for the manifest (tokens, blank id, labels)."""
        return {}

    def bench_rows(self, report: dict[str, Any]) -> tuple[list[dict[str, Any]], Figure, str]:
        """Latency rows (teacher/student in PyTorch, ONNX variants), what they cover, and a note."""
        raise NotImplementedError

    def rate_rows(self, report: dict[str, Any], rows: list[dict[str, Any]]) -> Figure | None:
        """Set ``row["quality"]`` (the guard metric, :attr:`metric`) of the benchmark rows this family can rate,
        every row on the same examples, for the size/latency/quality chart; return what they cover (``None``
        when it rates none). Rows it cannot rate (a teacher of another modality) keep ``None``."""
        return None

    @classmethod
    def summary_lines(cls, report: dict[str, Any]) -> list[str]:
        """The family's lines in the export section of ``summary.md`` (from the report alone)."""
        return []

    # -- shared helpers -------------------------------------------------------------------------
    def variant(self, what: str) -> str:
        """A report row's label for the exported model: ``variant("ONNX int8")`` -> ``"teacher ONNX int8"``
        when the run's teacher is exported (``compressor export RUN --model teacher``)."""
        return f"{self.job.model_name} {what}"

    @property
    def trained_on(self) -> str | None:
        """The data's front end under its runtime name (``nemo`` -> ``nemo_transducer``)."""
        from compressor.export.frontend import canonical_or_none

        return canonical_or_none(self.data_frontend)

    def split_size(self, split: str) -> int:
        return len(self.job.data.dataset(split))

    def figure(self, value: float, split: str, utterances: int) -> Figure:
        return Figure(float(value), split, int(utterances), self.split_size(split))
