"""The ``onnx`` exporter: the steps every model family shares, around one family unit per export.

Shared here: writing and checking the graphs (``onnx.checker``, onnxruntime vs PyTorch on real batches),
the int8 guard, the latency report and its plot, the manifest (``model.json``, ``README.md``, ONNX metadata)
and the ``summary.md`` section. What differs per family lives in one unit each (:mod:`compressor.export.rnnt`,
:mod:`~compressor.export.ctc`, :mod:`~compressor.export.classifier`, behind
:class:`compressor.export.family.FamilyExport`); :func:`register_family` adds another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import nn

from compressor.errors import UserError
from compressor.export import bench, manifest, parity, quantize
from compressor.export.base import Exporter, ExportJob, ExportResult
from compressor.export.classifier import ClassifierExport
from compressor.export.ctc import CTCExport
from compressor.export.family import FamilyExport, Figure
from compressor.export.graphs import write_graph
from compressor.export.rnnt import RNNTExport
from compressor.registry import Args

#: family units, asked in order whether they export a model
FAMILIES: list[type[FamilyExport]] = [RNNTExport, CTCExport, ClassifierExport]


def register_family(unit: type[FamilyExport]) -> None:
    """Make a family unit known to the ``onnx`` exporter (asked before the built-in ones)."""
    if unit not in FAMILIES:
        FAMILIES.insert(0, unit)


def family_of(model: nn.Module, model_ref: dict[str, Any], task_name: str) -> type[FamilyExport]:
    """The unit that exports ``model``; a clear error when none does."""
    for unit in FAMILIES:
        if unit.detect(model, model_ref, task_name):
            return unit
    raise UserError(
        f"the onnx exporter does not know the model family of "
        f"'{model_ref.get('name', type(model).__name__)}' (task '{task_name}'): it exports RNN-T models "
        f"(encode/predict/join), CTC models (forward_export) and classifiers (task 'classification')")


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


class OnnxExporter(Exporter):
    """Export RNN-T (sherpa-onnx NeMo transducer), CTC (NeMo CTC) or classifier models to ONNX."""

    Args = OnnxExportArgs

    def export(self, job: ExportJob) -> ExportResult:
        args: OnnxExportArgs = job.args if isinstance(job.args, OnnxExportArgs) else self.args  # type: ignore
        torch.manual_seed(0)
        model = job.model.cpu().eval()
        unit_cls = family_of(model, job.model_ref, getattr(job.task, "name", ""))
        unit = unit_cls(model, job, args)
        out = Path(job.out_dir)
        if unit.normalize_type not in ("", "per_feature"):
            raise UserError(f"the data's normalize_type '{unit.normalize_type}' has no sherpa-onnx equivalent "
                            f"(valid: none, per_feature)")
        gfiles = unit.graphs()
        paths = [write_graph(g, out, args.opset) for g in gfiles]
        for p in paths:
            parity.check_onnx(p)
        files = list(paths) + unit.side_files()
        report: dict[str, Any] = {"family": unit.name, "model": job.model_name,
                                  "model_ref": job.model_ref.get("name"), "opset": args.opset,
                                  "normalize_type": unit.normalize_type or "none",
                                  "frontend": {"data": unit.data_frontend}}
        report["parity"] = self._ort_parity(unit, gfiles, args)
        report[unit.check_key] = unit.check()
        report["int8"] = self._int8(unit, paths, args)
        files += [Path(p) for p in report["int8"].pop("_files", [])]
        files += unit.extras(report)
        rows, cover, note = unit.bench_rows(report)
        report["benchmark"] = {"rows": rows, "threads": args.threads, "note": note, "split": cover.split,
                               "utterances": cover.utterances, "split_size": cover.split_size}
        artefacts = unit.artefacts(report)
        report["frontend"]["artefacts"] = {a.name: {"runtime_frontend": a.frontend,
                                                    "matches_training": a.matches_training} for a in artefacts}
        plot = bench.plot_report(rows, out / "export_report.png",
                                 f"{job.model_name} ({job.model_ref.get('name')}) export, 1 thread, "
                                 f"{cover.coverage()}")
        files.append(plot)
        files += manifest.write(out, manifest.build(unit, report, artefacts))
        (out / "export_report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        files.append(out / "export_report.json")
        return ExportResult(files=files, report=report, summary_md=summary_markdown(report))

    def _ort_parity(self, unit: FamilyExport, gfiles: list[Any], args: OnnxExportArgs) -> dict[str, Any]:
        g = torch.Generator().manual_seed(0)
        batches = parity.parity_batches(unit.job.data, args.parity_batch_sizes)
        inputs: dict[str, list[tuple[torch.Tensor, ...]]] = {gr.name: [] for gr in gfiles}
        for batch in batches:
            for name, inp in unit.parity_inputs(gfiles, batch, g).items():
                inputs[name].append(inp)
        result: dict[str, Any] = {"atol": args.parity_atol, "split": "test", "batches": len(batches),
                                  "max_abs_diff": {}, "shapes": {}}
        for gr in gfiles:
            sess = parity.session(unit.out / gr.name)
            diffs = [parity.max_abs_diff(gr, sess, inp) for inp in inputs[gr.name]]
            worst = max(diffs) if diffs else 0.0
            result["max_abs_diff"][gr.name] = worst
            result["shapes"][gr.name] = sorted({tuple(inp[0].shape) for inp in inputs[gr.name]})
            if worst > args.parity_atol:
                raise UserError(f"parity failed: {gr.name} differs from PyTorch by {worst:.3g} "
                                f"(> parity_atol {args.parity_atol}) on real batches")
        return result

    def _int8(self, unit: FamilyExport, paths: list[Path], args: OnnxExportArgs) -> dict[str, Any]:
        if not args.int8:
            return {"kept": False, "reason": "int8 disabled (int8: false)"}
        qpaths: list[Path] = []
        methods = {}
        for p in paths:
            q = quantize.int8_name(p)
            if quantize.has_conv(p):
                ds = unit.job.data.dataset("train")
                feeds = [unit.calibration_feed(unit.job.data.collate([ds[i]]))
                         for i in range(min(args.calibration_utterances, len(ds)))]
                quantize.quantize_static_file(p, q, feeds)
                methods[p.name] = "static (QDQ, calibrated on train audio)"
            else:
                quantize.quantize_dynamic_file(p, q)
                methods[p.name] = "dynamic"
            parity.check_onnx(q)
            qpaths.append(q)
        fp32 = unit.quality("", "valid", args.valid_utterances)
        int8 = unit.quality(".int8", "valid", args.valid_utterances)
        delta = (fp32.value - int8.value) if unit.higher_is_better else (int8.value - fp32.value)
        res: dict[str, Any] = {"methods": methods, "tolerance": args.int8_tolerance,
                               "size_fp32": bench.file_size(paths), "size_int8": bench.file_size(qpaths),
                               "metric": unit.metric, "fp32": fp32.value, "int8": int8.value, "delta": delta,
                               "split": fp32.split, "utterances": fp32.utterances,
                               "split_size": fp32.split_size}
        if delta > args.int8_tolerance:
            for q in qpaths:
                q.unlink(missing_ok=True)
            res.update(kept=False, reason=f"int8 {unit.metric} worse than fp32 by {delta:.3g} "
                                          f"(> int8_tolerance {args.int8_tolerance}): kept fp32 only")
        else:
            res.update(kept=True, _files=qpaths)
        return res


def summary_markdown(report: dict[str, Any]) -> str:
    """The export section of a run's ``summary.md``: every figure names its split and coverage."""
    unit = next(u for u in FAMILIES if u.name == report["family"])
    lines = [f"## Export (onnx, {report['family']})", ""]
    par = report["parity"]
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in par["max_abs_diff"].items())
    lines.append(f"- onnx.checker: passed; onnxruntime vs PyTorch max |diff| on {par.get('batches', '?')} real "
                 f"{par.get('split', 'test')} batches: {diffs} (atol {par['atol']})")
    lines += unit.summary_lines(report)
    q = report["int8"]
    if "metric" in q:
        methods = ", ".join(sorted(set(q["methods"].values())))
        cover = Figure(0, q["split"], q["utterances"], q["split_size"]).coverage()
        lines.append(f"- int8 ({methods}): {q['metric']} {q['int8']:.2%} vs fp32 {q['fp32']:.2%} on {cover}; "
                     f"size {q['size_int8'] / 1e6:.2f} MB vs {q['size_fp32'] / 1e6:.2f} MB; "
                     + ("kept" if q["kept"] else q["reason"]))
    else:
        lines.append(f"- int8: {q.get('reason')}")
    b = report["benchmark"]
    cover = Figure(0, b["split"], b["utterances"], b["split_size"]).coverage()
    lines += ["", f"Latency on {cover}:", "",
              "| variant | params | size (MB) | latency/utt (ms) | RTF |", "|---|---|---|---|---|"]
    for r in b["rows"]:
        params = f"{r['params']:,}" if r["params"] is not None else "-"
        lines.append(f"| {r['variant']} | {params} | {r['size_mb']:.2f} | {r['latency_ms']:.1f} "
                     f"| {r['rtf']:.4f} |")
    lines += ["", f"1 thread; {b['note']}. Plot: `export/export_report.png`. On-device use: `export/README.md`, "
                  f"`export/model.json`.", ""]
    return "\n".join(lines)
