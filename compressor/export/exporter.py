"""The ``onnx`` exporter: the steps every model family shares, around one family unit per export.

Shared here: writing and checking the graphs (``onnx.checker``, onnxruntime vs PyTorch on real batches),
the int8 guard, the latency report and its plot, the manifest (``model.json``, ``README.md``, ONNX metadata)
and the ``summary.md`` section. What differs per family lives in the family's export unit, a
:class:`compressor.export.family.FamilyExport` registered as an ``export_unit`` component (the built-in ones:
:mod:`compressor.families.rnnt.export`, :mod:`compressor.families.ctc.export`,
:mod:`compressor.families.slu.export`); :func:`family_of` asks them in their ``order``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from compressor.core.errors import UserError
from compressor.core.progress import Progress, duration
from compressor.core.registry import Entry, Registry
from compressor.export import bench, manifest, parity, quantize
from compressor.export.args import OnnxExportArgs
from compressor.export.base import Exporter, ExportJob, ExportResult
from compressor.export.family import FamilyExport, Figure
from compressor.export.graphs import write_graph

T = TypeVar("T")


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from compressor.plugins import get_registry

    return get_registry()


def _unit(entry: Entry) -> type[FamilyExport]:
    factory = entry.factory
    return factory.resolve() if hasattr(factory, "resolve") else factory  # type: ignore[union-attr,return-value]


def export_units(registry: Registry | None = None) -> list[type[FamilyExport]]:
    """The registered export units in the order they are asked: by their ``order`` (lowest first; a plugin's
    unit registered without one counts 0, so it is asked before the built-in ones), then by name."""
    entries = sorted(_registry(registry).entries("export_unit"), key=lambda e: (e.extra.get("order", 0), e.name))
    return [_unit(e) for e in entries]


def export_unit(name: str, registry: Registry | None = None) -> type[FamilyExport]:
    """The export unit registered as ``name``."""
    return _unit(_registry(registry).get("export_unit", name))


def family_of(model: nn.Module, model_ref: dict[str, Any], task_name: str,
              registry: Registry | None = None) -> type[FamilyExport]:
    """The unit that exports ``model``; a clear error when none does."""
    for unit in export_units(registry):
        if unit.detect(model, model_ref, task_name):
            return unit
    raise UserError(
        f"the onnx exporter does not know the model family of "
        f"'{model_ref.get('name', type(model).__name__)}' (task '{task_name}'): it exports RNN-T models "
        f"(encode/predict/join), CTC models (forward_export) and classifiers (task 'classification')")


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
        paths = []
        with Progress("export: ONNX graphs + onnx.checker", total=len(gfiles), unit="graph") as p:
            for g in gfiles:
                paths.append(write_graph(g, out, args.opset))
                parity.check_onnx(paths[-1])
                p.update()
        files = list(paths) + unit.side_files() + unit.copy_decode_example()
        report: dict[str, Any] = {"family": unit.name, "model": job.model_name,
                                  "model_ref": job.model_ref.get("name"), "opset": args.opset,
                                  "normalize_type": unit.normalize_type or "none",
                                  "frontend": {"data": unit.data_frontend}}
        report["parity"] = _phase("export check: onnxruntime vs PyTorch on real batches",
                                  lambda: self._ort_parity(unit, gfiles, args), _parity_text)
        report[unit.check_key] = _phase(f"export check: {unit.check_key} against PyTorch", unit.check,
                                        _check_text)
        report["int8"] = _phase("export: int8", lambda: self._int8(unit, paths, args), _int8_text)
        files += [Path(p) for p in report["int8"].pop("_files", [])]
        files += _phase("export: extras (streaming encoder)", lambda: unit.extras(report),
                        lambda made: f"{len(made)} file{'s' if len(made) != 1 else ''}",
                        announce=unit.name == "rnnt")
        threads = bench.latency_threads(args.threads)
        rows, cover, note = _phase(f"export: latency on {threads} thread{'s' if threads != 1 else ''}",
                                   lambda: unit.bench_rows(report), lambda r: f"{len(r[0])} variants")
        rated = unit.rate_rows(report, rows)
        report["benchmark"] = {"rows": rows, "threads": threads, "note": note, "split": cover.split,
                               "utterances": cover.utterances, "split_size": cover.split_size,
                               "quality": None if rated is None else {
                                   "metric": unit.metric, "higher_is_better": unit.higher_is_better,
                                   "split": rated.split, "utterances": rated.utterances,
                                   "split_size": rated.split_size}}
        artefacts = unit.artefacts(report)
        report["frontend"]["artefacts"] = {a.name: {"runtime_frontend": a.frontend,
                                                    "matches_training": a.matches_training} for a in artefacts}
        shown = unit.metric.upper() if unit.metric in ("wer", "cer") else unit.metric
        quality = f"{shown} on {rated.coverage()}" if rated is not None else ""
        plot = bench.plot_report(rows, out / "export_report.png",
                                 f"{job.model_name} ({job.model_ref.get('name')}) export: latency on "
                                 f"{cover.coverage()}" + (f"; {quality}" if quality else ""),
                                 metric=unit.metric if rated is not None else None,
                                 higher_is_better=unit.higher_is_better, threads=threads)
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


def _phase(desc: str, work: Callable[[], T], describe: Callable[[T], str], announce: bool = True) -> T:
    """Run one export step as a progress phase: a line when it starts, one with its result when it ends."""
    p = Progress(desc, announce=announce, enabled=announce)
    try:
        result = work()
    except BaseException:
        p.close(silent=True)
        raise
    p.close(f"{describe(result)} ({duration(p.elapsed)})")
    return result


def _parity_text(res: dict[str, Any]) -> str:
    worst = max(res["max_abs_diff"].values(), default=0.0)
    return f"max |diff| {worst:.2e} <= {res['atol']} on {res['batches']} batches"


def _check_text(res: dict[str, Any]) -> str:
    if "exact_match" in res:
        return (f"transcripts equal on {res['exact_match']:.0%} of {res['utterances']} utterances, WER "
                f"sherpa-onnx {res['wer_sherpa']:.2%} / PyTorch {res['wer_pytorch']:.2%}")
    if "agreement" in res:
        return f"predictions agree on {res['agreement']:.0%} of {res['examples']} examples"
    return "passed"


def _int8_text(res: dict[str, Any]) -> str:
    if "metric" not in res:
        return str(res.get("reason", "skipped"))
    verdict = "kept" if res.get("kept") else "not kept"
    return (f"{res['metric']} {res['int8']:.2%} vs fp32 {res['fp32']:.2%}, {res['size_int8'] / 1e6:.2f} MB vs "
            f"{res['size_fp32'] / 1e6:.2f} MB: {verdict}")


def summary_markdown(report: dict[str, Any]) -> str:
    """The export section of a run's ``summary.md``: every figure names its split and coverage."""
    unit = export_unit(report["family"])
    lines = [f"## Export (onnx, {report['family']}) of the {report.get('model', 'student')}", ""]
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
    q = b.get("quality")
    metric = q["metric"] if q else None
    head = f" {metric.upper() if metric in ('wer', 'cer') else metric} |" if metric else ""
    rated = f"; {metric} on {Figure(0, q['split'], q['utterances'], q['split_size']).coverage()}" if q else ""
    lines += ["", f"Latency on {cover}{rated}:", "",
              f"| variant | params | size (MB) | latency/utt (ms) | RTF |{head}",
              "|---|---|---|---|---|" + ("---|" if metric else "")]
    for r in b["rows"]:
        params = f"{r['params']:,}" if r["params"] is not None else "-"
        value = ""
        if metric:
            value = f" {r['quality']:.2%} |" if r.get("quality") is not None else " - |"
        lines.append(f"| {r['variant']} | {params} | {r['size_mb']:.2f} | {r['latency_ms']:.1f} "
                     f"| {r['rtf']:.4f} |{value}")
    threads = b.get("threads", 1)
    lines += ["", f"{threads} thread{'s' if threads != 1 else ''}; {b['note']}. Plot (quality against size and "
                  f"latency, Pareto front marked): `export/export_report.png`. On-device use: `export/README.md`, "
                  f"`export/model.json`.", ""]
    return "\n".join(lines)
