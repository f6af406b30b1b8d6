"""Utterance classifiers (intents, keywords; task ``classification``) for onnxruntime.

``model.onnx``: ``features`` (N, T, 80) float, ``feature_lengths`` (N,) int64 -> ``logits`` (N, C), plus
``labels.txt``. onnxruntime computes no features: the caller computes the data's front end (its settings are
in the manifest and the ONNX metadata; ``classify_onnxruntime.py``, copied into every classifier export, does it
in numpy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressor.export import bench, parity
from compressor.export.family import Artefact, FamilyExport, Figure
from compressor.export.graphs import GraphFile


class ClassifierGraph(nn.Module):
    def __init__(self, model: nn.Module, feature_key: str = "features") -> None:
        super().__init__()
        self.model = model
        self.feature_key = feature_key

    def forward(self, features: torch.Tensor, feature_lengths: torch.Tensor) -> torch.Tensor:
        return self.model({self.feature_key: features, "feature_lengths": feature_lengths})["logits"]


class ClassifierExport(FamilyExport):
    """Models of the ``classification`` task: fbank features in, class logits out, for onnxruntime."""

    name = "classifier"
    metric = "accuracy"
    higher_is_better = True
    check_key = "classification"
    decode_example = "classify_onnxruntime.py"

    @classmethod
    def detect(cls, model: nn.Module, model_ref: dict[str, Any], task_name: str) -> bool:
        return task_name == "classification"

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.info.get("labels") or range(int(self.info.get("num_classes", 0)))]

    @property
    def label_key(self) -> str:
        return getattr(getattr(self.job.task, "args", None), "label_key", "label")

    def graphs(self) -> list[GraphFile]:
        t = 53
        labels = self.labels
        return [GraphFile(
            "model.onnx", ClassifierGraph(self.model),
            (torch.randn(2, t, self.feature_dim), torch.tensor([t, t - 7], dtype=torch.int64)),
            ["features", "feature_lengths"], ["logits"],
            {"features": {0: "N", 1: "T"}, "feature_lengths": {0: "N"}, "logits": {0: "N"}},
            {"num_classes": str(len(labels)), "labels": ",".join(labels), "feat_dim": str(self.feature_dim),
             "normalize_type": self.normalize_type, "comment": "exported by compressor (utterance classifier)"})]

    def side_files(self) -> list[Path]:
        path = self.out / "labels.txt"
        path.write_text("\n".join(self.labels) + "\n", encoding="utf-8")
        return [path]

    def _feed(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"features": batch["features"].float().numpy(),
                "feature_lengths": batch["feature_lengths"].to(torch.int64).numpy()}

    def parity_inputs(self, graphs: list[GraphFile], batch: dict[str, Any], g: torch.Generator
                      ) -> dict[str, tuple[torch.Tensor, ...]]:
        return {"model.onnx": (batch["features"].float(), batch["feature_lengths"].to(torch.int64))}

    def calibration_feed(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self._feed(batch)

    def check(self) -> dict[str, Any]:
        sess = parity.session(self.out / "model.onnx")
        agree = correct_t = correct_o = n = 0
        for batch in self.job.data.loader("test", 16):
            with torch.no_grad():
                ref = self.model(batch)["logits"].argmax(-1)
            got = torch.from_numpy(sess.run(None, self._feed(batch))[0]).argmax(-1)
            labels = batch[self.label_key]
            agree += int((ref == got).sum())
            correct_t += int((ref == labels).sum())
            correct_o += int((got == labels).sum())
            n += int(labels.numel())
        return {"split": "test", "examples": n, "split_size": self.split_size("test"),
                "agreement": agree / max(1, n), "accuracy_pytorch": correct_t / max(1, n),
                "accuracy_onnx": correct_o / max(1, n)}

    def quality(self, suffix: str, split: str, limit: int) -> Figure:
        sess = parity.session(self.out / f"model{suffix}.onnx")
        correct = n = 0
        for batch in self.job.data.loader(split, 16):
            got = torch.from_numpy(sess.run(None, self._feed(batch))[0]).argmax(-1)
            correct += int((got == batch[self.label_key]).sum())
            n += int(batch[self.label_key].numel())
        return self.figure(correct / max(1, n), split, n)

    def manifest_fields(self) -> dict[str, Any]:
        return {"labels": "labels.txt", "num_classes": len(self.labels)}

    def artefacts(self, report: dict[str, Any]) -> list[Artefact]:
        c = report.get("classification", {})
        figures = {}
        if c:
            figures["accuracy"] = Figure(c["accuracy_onnx"], c["split"], c["examples"], c["split_size"])
        int8 = {"path_or_bytes": "model.int8.onnx"} if report.get("int8", {}).get("kept") else None
        return [Artefact(
            "onnxruntime", "onnxruntime", "onnxruntime.InferenceSession", {"path_or_bytes": "model.onnx"},
            {"providers": ["CPUExecutionProvider"]}, None, self.data_frontend, "caller", True, int8, None,
            figures, "feed {'features': (N, T, 80) float32 log-mel of the front end below, 'feature_lengths': "
                     "(N,) int64}; output 'logits' (N, C), class names in labels.txt")]

    def bench_rows(self, report: dict[str, Any]) -> tuple[list[dict[str, Any]], Figure, str]:
        args = self.args
        ds = self.job.data.dataset("test")
        batches = [self.job.data.collate([ds[i]]) for i in range(min(args.bench_utterances, len(ds)))]
        seconds = sum(float(b["feature_lengths"][0]) * 0.01 for b in batches)
        rows: list[dict[str, Any]] = []
        threads = bench.latency_threads(args.threads)
        with bench.torch_threads(threads):
            for label, m in (("teacher (PyTorch)", self.job.teacher), (self.variant("(PyTorch)"), self.model)):
                if m is None:
                    continue
                try:
                    with torch.no_grad():
                        t = bench.timed(lambda m=m: [m(b) for b in batches])
                except Exception:
                    continue  # a teacher of another modality (e.g. text): not comparable
                rows.append(bench.row(label, m, None, t, len(batches), seconds))
        for label, p in ((self.variant("ONNX fp32"), self.out / "model.onnx"),
                         (self.variant("ONNX int8"), self.out / "model.int8.onnx")):
            if not p.exists():
                continue
            sess = parity.session(p, threads)
            feeds = [self._feed(b) for b in batches]
            t = bench.timed(lambda s=sess, fs=feeds: [s.run(None, f) for f in fs])
            rows.append(bench.row(label, None, [p], t, len(batches), seconds))
        return rows, self.figure(0.0, "test", len(batches)), "from features: PyTorch forward vs onnxruntime session"

    def rate_rows(self, report: dict[str, Any], rows: list[dict[str, Any]]) -> Figure | None:
        """Accuracy of every variant on the whole test split (the check's figures reused)."""
        c = report.get(self.check_key) or {}
        if not c:
            return None
        for row in rows:
            variant = row["variant"]
            quality = None
            if variant == self.variant("(PyTorch)"):
                quality = c["accuracy_pytorch"]
            elif variant == self.variant("ONNX fp32"):
                quality = c["accuracy_onnx"]
            elif variant == self.variant("ONNX int8") and (self.out / "model.int8.onnx").exists():
                quality = self.quality(".int8", "test", 10**9).value
            elif variant == "teacher (PyTorch)" and self.job.teacher is not None:
                quality = self._torch_accuracy(self.job.teacher)
            row["quality"] = quality
        return self.figure(0.0, "test", c["examples"])

    def _torch_accuracy(self, model: nn.Module) -> float | None:
        correct = n = 0
        try:
            with torch.no_grad():
                for batch in self.job.data.loader("test", 16):
                    got = model(batch)["logits"].argmax(-1)
                    correct += int((got == batch[self.label_key]).sum())
                    n += int(batch[self.label_key].numel())
        except Exception:  # a teacher of another modality (text): not comparable here
            return None
        return correct / max(1, n)

    @classmethod
    def summary_lines(cls, report: dict[str, Any]) -> list[str]:
        c = report["classification"]
        cover = Figure(0, c["split"], c["examples"], c["split_size"]).coverage()
        return [f"- onnxruntime vs PyTorch on {cover}: agreement {c['agreement']:.1%}, "
                f"accuracy ONNX {c['accuracy_onnx']:.2%} / PyTorch {c['accuracy_pytorch']:.2%}"]
