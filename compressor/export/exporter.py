"""The ``onnx`` exporter: sherpa-onnx/onnxruntime files, parity checks, guarded int8, a latency report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from compressor.errors import UserError
from compressor.export import bench, graphs, parity, quantize
from compressor.export.base import Exporter, ExportJob, ExportResult
from compressor.registry import Args

STREAMING_NOTE = (
    "no streaming export: the encoder is not a stack of single-layer unidirectional LSTMs of one width "
    "(the layout whose states travel in sherpa-onnx's online NeMo-transducer cache slots)")

FRONTEND_OF = {"rnnt": ("nemo", "nemo_transducer"), "ctc": ("nemo_ctc",)}


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
        info = job.data.info
        family = graphs.model_family(model, job.model_ref, getattr(job.task, "name", ""))
        feat_dim = int(info.get("feature_dim", 80))
        out = Path(job.out_dir)
        norm = str(info.get("normalize_type") or "")
        if norm not in ("", "per_feature"):
            raise UserError(f"the data's normalize_type '{norm}' has no sherpa-onnx equivalent "
                            f"(valid: none, per_feature)")
        if family == "rnnt":
            gfiles = graphs.rnnt_graphs(model, feat_dim, norm)
        elif family == "ctc":
            gfiles = graphs.ctc_graphs(model, feat_dim, norm)
        else:
            labels = [str(x) for x in info.get("labels") or range(int(info.get("num_classes", 0)))]
            gfiles = graphs.classifier_graphs(model, feat_dim, labels, norm)
        paths = [graphs.write_graph(g, out, args.opset) for g in gfiles]
        for p in paths:
            parity.check_onnx(p)
        files = list(paths)
        report: dict[str, Any] = {"family": family, "model": job.model_name,
                                  "model_ref": job.model_ref.get("name"), "opset": args.opset,
                                  "normalize_type": norm or "none"}
        if family in ("rnnt", "ctc"):
            tokens = info.get("tokens")
            if not tokens or len(tokens) != int(model.vocab_size):
                raise UserError(f"the data's token list ({len(tokens or [])} tokens) does not match the "
                                f"model's vocabulary ({int(model.vocab_size)}): cannot write tokens.txt")
            files.append(graphs.write_tokens(tokens, out / "tokens.txt"))
        else:
            (out / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
            files.append(out / "labels.txt")

        sessions = [parity.session(p) for p in paths]
        report["parity"] = self._ort_parity(family, gfiles, sessions, model, job, args)
        if family in ("rnnt", "ctc"):
            data_frontend = info.get("frontend")
            match = None if data_frontend is None else data_frontend in FRONTEND_OF[family]
            report["frontend"] = {"data": data_frontend, "sherpa_onnx": FRONTEND_OF[family][-1],
                                  "match": match}
            report["transcripts"] = self._transcript_parity(family, model, job, out, args)
        else:
            report["classification"] = self._classifier_parity(model, sessions[0], job)
        report["int8"] = self._int8(family, model, job, out, paths, args)
        files += [Path(p) for p in report["int8"].pop("_files", [])]
        if family == "rnnt":
            if args.streaming and norm:
                report["streaming"] = {"exported": False, "note": "no streaming export: per_feature "
                                       "normalisation needs the whole utterance, a stream has only a prefix"}
            elif args.streaming and graphs.supports_streaming(model):
                report["streaming"] = self._streaming(model, job, out, feat_dim, args, report["int8"])
                files.append(out / "encoder.streaming.onnx")
                if report["streaming"].get("int8_kept"):
                    files.append(out / "encoder.streaming.int8.onnx")
            else:
                report["streaming"] = {"exported": False, "note": STREAMING_NOTE if args.streaming
                                       else "streaming: false"}
        report["benchmark"] = self._bench(family, model, job, out, args, report)
        plot = bench.plot_report(report["benchmark"]["rows"], out / "export_report.png",
                                 f"{job.model_name} ({job.model_ref.get('name')}) export, 1 thread")
        files.append(plot)
        (out / "export_report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        files.append(out / "export_report.json")
        return ExportResult(files=files, report=report, summary_md=summary_markdown(report))

    # -- parity --------------------------------------------------------------------------------
    def _batches(self, job: ExportJob, args: OnnxExportArgs) -> list[dict[str, Any]]:
        split = "test" if "test" in job.data.datasets else next(iter(job.data.datasets))
        ds = job.data.dataset(split)
        out = []
        start = 0
        for bs in args.parity_batch_sizes:
            idx = [(start + i) % len(ds) for i in range(bs)]
            start += bs
            batch = job.data.collate([ds[i] for i in idx])
            out.append(batch)
            # the same utterances cut to about half their length: another time axis for the graphs
            half = max(4, int(batch["features"].shape[1]) // 2)
            out.append({**batch, "features": batch["features"][:, :half],
                        "feature_lengths": batch["feature_lengths"].clamp(max=half)})
        return out

    def _ort_parity(self, family: str, gfiles: list[graphs.GraphFile], sessions: list[Any], model: nn.Module,
                    job: ExportJob, args: OnnxExportArgs) -> dict[str, Any]:
        inputs = parity.parity_inputs(family, gfiles, self._batches(job, args), model)
        result: dict[str, Any] = {"atol": args.parity_atol, "max_abs_diff": {}, "shapes": {}}
        for g, sess in zip(gfiles, sessions):
            diffs = [parity.max_abs_diff(g, sess, inp) for inp in inputs[g.name]]
            worst = max(diffs) if diffs else 0.0
            result["max_abs_diff"][g.name] = worst
            result["shapes"][g.name] = sorted({tuple(inp[0].shape) for inp in inputs[g.name]})
            if worst > args.parity_atol:
                raise UserError(f"parity failed: {g.name} differs from PyTorch by {worst:.3g} "
                                f"(> parity_atol {args.parity_atol}) on real batches")
        return result

    def _transcript_parity(self, family: str, model: nn.Module, job: ExportJob, out: Path,
                           args: OnnxExportArgs) -> dict[str, Any]:
        from compressor.asr.metrics import ErrorCounter, detokenize

        tokens = list(job.data.info["tokens"])
        blank = len(tokens) - 1
        utts = parity.load_utterances(job.data, "test", args.decode_utterances)
        torch_ids = [parity.torch_greedy(family, model, u.features) for u in utts]
        rec = parity.sherpa_recognizer(family, _named(out, family), out / "tokens.txt", threads=1)
        sherpa_ids = parity.sherpa_decode(rec, [u.wave for u in utts], parity.token_lookup(tokens))
        match = sum(a == b for a, b in zip(torch_ids, sherpa_ids)) / max(1, len(utts))
        c_torch, c_sherpa = ErrorCounter(), ErrorCounter()
        for u, a, b in zip(utts, torch_ids, sherpa_ids):
            c_torch.add(detokenize(a, tokens, blank), u.text)
            c_sherpa.add(detokenize(b, tokens, blank), u.text)
        res = {"utterances": len(utts), "exact_match": match, "wer_pytorch": c_torch.wer,
               "wer_sherpa": c_sherpa.wer, "cer_pytorch": c_torch.cer, "cer_sherpa": c_sherpa.cer,
               "nonempty_pytorch": sum(bool(a) for a in torch_ids) / max(1, len(utts))}
        if match < args.min_transcript_match:
            frontend = job.data.info.get("frontend")
            hint = ""
            if frontend is not None and frontend not in FRONTEND_OF[family]:
                hint = (f"; the data's features use the '{frontend}' front end but sherpa-onnx computes "
                        f"'{FRONTEND_OF[family][-1]}' features for this model type")
            else:
                hint = ("; check that the data's features match sherpa-onnx's front end for this model type "
                        "(compressor.export.frontend)")
            raise UserError(f"parity failed: sherpa-onnx transcripts equal the PyTorch greedy ones for only "
                            f"{match:.0%} of {len(utts)} test utterances "
                            f"(need {args.min_transcript_match:.0%}){hint}")
        return res

    def _classifier_parity(self, model: nn.Module, sess: Any, job: ExportJob) -> dict[str, Any]:
        label_key = getattr(getattr(job.task, "args", None), "label_key", "label")
        agree = correct_t = correct_o = n = 0
        for batch in job.data.loader("test", 16):
            with torch.no_grad():
                ref = model(batch)["logits"].argmax(-1)
            got = sess.run(None, {"features": batch["features"].float().numpy(),
                                  "feature_lengths": batch["feature_lengths"].to(torch.int64).numpy()})[0]
            got = torch.from_numpy(got).argmax(-1)
            labels = batch[label_key]
            agree += int((ref == got).sum())
            correct_t += int((ref == labels).sum())
            correct_o += int((got == labels).sum())
            n += int(labels.numel())
        return {"examples": n, "agreement": agree / max(1, n), "accuracy_pytorch": correct_t / max(1, n),
                "accuracy_onnx": correct_o / max(1, n)}

    # -- streaming ----------------------------------------------------------------------------
    def _streaming(self, model: nn.Module, job: ExportJob, out: Path, feat_dim: int, args: OnnxExportArgs,
                   int8: dict[str, Any]) -> dict[str, Any]:
        """encoder.streaming.onnx for sherpa-onnx's OnlineRecognizer (model_type nemo_transducer)."""
        from compressor.asr.metrics import ErrorCounter, detokenize
        from compressor.export.frontend import sherpa_fbank

        stack = int(model.encoder.stack)
        chunk = -(-args.chunk_frames // stack) * stack
        graph = graphs.rnnt_streaming_graph(model, feat_dim, chunk)
        path = graphs.write_graph(graph, out, args.opset)
        parity.check_onnx(path)
        sess = parity.session(path)
        g = torch.Generator().manual_seed(1)
        layers, hidden = len(model.encoder.layers), int(model.encoder.layers[0].hidden_size)
        worst = 0.0
        for n in (1, 3):
            feats = self._batches(job, args)[0]["features"][:n, :chunk].transpose(1, 2).contiguous()
            if feats.shape[0] < n or feats.shape[2] < chunk:
                continue
            inputs = (feats, torch.full((n,), chunk, dtype=torch.int64), torch.randn(n, layers, 1, hidden,
                      generator=g) * 0.5, torch.randn(n, layers, 1, hidden, generator=g) * 0.5,
                      torch.zeros(n, dtype=torch.int64))
            worst = max(worst, parity.max_abs_diff(graph, sess, inputs))
        if worst > args.parity_atol:
            raise UserError(f"parity failed: encoder.streaming.onnx differs from PyTorch by {worst:.3g} "
                            f"(> parity_atol {args.parity_atol})")
        tokens = list(job.data.info["tokens"])
        blank = len(tokens) - 1
        utts = parity.load_utterances(job.data, "test", args.decode_utterances)
        tail = np.zeros(int(0.3 * 16000), dtype=np.float32)
        online_feats = [sherpa_fbank(torch.from_numpy(np.concatenate([u.wave, tail])), 16000, "nemo_online")
                        for u in utts]
        ref = [parity.torch_streaming_greedy(model, f, chunk) for f in online_feats]
        named = {"encoder": path, "decoder": out / "decoder.onnx", "joiner": out / "joiner.onnx"}
        got = parity.sherpa_online_decode(named, out / "tokens.txt", [u.wave for u in utts],
                                          parity.token_lookup(tokens), tail_seconds=0.3)
        offline = [parity.torch_greedy("rnnt", model, u.features) for u in utts]
        match = sum(a == b for a, b in zip(ref, got)) / max(1, len(utts))
        c_online, c_offline = ErrorCounter(), ErrorCounter()
        for u, a, b in zip(utts, got, offline):
            c_online.add(detokenize(a, tokens, blank), u.text)
            c_offline.add(detokenize(b, tokens, blank), u.text)
        res = {"exported": True, "file": path.name, "chunk_frames": chunk, "max_abs_diff": worst,
               "utterances": len(utts), "exact_match_vs_pytorch_streaming": match,
               "match_vs_offline": sum(a == b for a, b in zip(got, offline)) / max(1, len(utts)),
               "wer_online_sherpa": c_online.wer, "wer_offline_pytorch": c_offline.wer,
               "frontend_note": "sherpa-onnx's online NeMo recognizer computes 'nemo_online' features (hann "
                                "window, 0-8000 Hz), the offline one 'nemo_transducer' (povey, 0-7600 Hz): a "
                                "model trained on the offline front end sees slightly different input online"}
        if match < args.min_transcript_match:
            raise UserError(f"parity failed: sherpa-onnx's online recognizer equals the PyTorch streaming "
                            f"decode for only {match:.0%} of {len(utts)} test utterances")
        # The same keys whatever the int8 guards decide: None where no int8 streaming encoder was tried.
        res.update(wer_online_int8=None, int8_kept=False,
                   int8_reason="the offline int8 decoder/joiner was not kept, so no int8 streaming encoder")
        if int8.get("kept"):  # the offline int8 decoder/joiner passed the guard: add an int8 streaming encoder
            qpath = quantize.quantize_dynamic_file(path, quantize.int8_name(path))
            parity.check_onnx(qpath)
            qnamed = {"encoder": qpath, "decoder": out / "decoder.int8.onnx", "joiner": out / "joiner.int8.onnx"}
            qgot = parity.sherpa_online_decode(qnamed, out / "tokens.txt", [u.wave for u in utts],
                                               parity.token_lookup(tokens), tail_seconds=0.3)
            c_q = ErrorCounter()
            for u, a in zip(utts, qgot):
                c_q.add(detokenize(a, tokens, blank), u.text)
            kept = c_q.wer - c_online.wer <= args.int8_tolerance
            res.update(wer_online_int8=c_q.wer, int8_kept=kept,
                       int8_reason="kept" if kept else f"int8 online WER worse by {c_q.wer - c_online.wer:.3g} "
                                                     f"(> int8_tolerance {args.int8_tolerance})")
            if not kept:
                qpath.unlink(missing_ok=True)
        return res

    # -- int8 ----------------------------------------------------------------------------------
    def _int8(self, family: str, model: nn.Module, job: ExportJob, out: Path, paths: list[Path],
              args: OnnxExportArgs) -> dict[str, Any]:
        if not args.int8:
            return {"kept": False, "reason": "int8 disabled (int8: false)"}
        qpaths: list[Path] = []
        methods = {}
        for p in paths:
            q = quantize.int8_name(p)
            if quantize.has_conv(p):
                feeds = self._calibration_feeds(family, job, args)
                quantize.quantize_static_file(p, q, feeds)
                methods[p.name] = "static (QDQ, calibrated on train audio)"
            else:
                quantize.quantize_dynamic_file(p, q)
                methods[p.name] = "dynamic"
            parity.check_onnx(q)
            qpaths.append(q)
        res: dict[str, Any] = {"methods": methods, "tolerance": args.int8_tolerance,
                               "size_fp32": bench.file_size(paths), "size_int8": bench.file_size(qpaths)}
        if family in ("rnnt", "ctc"):
            from compressor.asr.metrics import ErrorCounter, detokenize

            tokens = list(job.data.info["tokens"])
            ids = parity.token_lookup(tokens)
            utts = parity.load_utterances(job.data, "valid", args.valid_utterances)
            waves = [u.wave for u in utts]
            wers = {}
            for tag, named in (("fp32", _named(out, family)), ("int8", _named(out, family, ".int8"))):
                rec = parity.sherpa_recognizer(family, named, out / "tokens.txt", threads=1)
                counter = ErrorCounter()
                for u, hyp in zip(utts, parity.sherpa_decode(rec, waves, ids)):
                    counter.add(detokenize(hyp, tokens, len(tokens) - 1), u.text)
                wers[tag] = counter.wer
            res.update(metric="wer", fp32=wers["fp32"], int8=wers["int8"], utterances=len(utts))
            delta = wers["int8"] - wers["fp32"]
        else:
            acc = {}
            for tag, p in (("fp32", paths[0]), ("int8", qpaths[0])):
                sess = parity.session(p)
                correct = n = 0
                for batch in job.data.loader("valid", 16):
                    feed = {"features": batch["features"].float().numpy(),
                            "feature_lengths": batch["feature_lengths"].to(torch.int64).numpy()}
                    got = sess.run(None, feed)[0]
                    label_key = getattr(getattr(job.task, "args", None), "label_key", "label")
                    correct += int((torch.from_numpy(got).argmax(-1) == batch[label_key]).sum())
                    n += int(batch[label_key].numel())
                acc[tag] = correct / max(1, n)
            res.update(metric="accuracy", fp32=acc["fp32"], int8=acc["int8"])
            delta = acc["fp32"] - acc["int8"]
        res["delta"] = delta
        if delta > args.int8_tolerance:
            for q in qpaths:
                q.unlink(missing_ok=True)
            res.update(kept=False, reason=f"int8 {res['metric']} worse than fp32 by {delta:.3g} "
                                          f"(> int8_tolerance {args.int8_tolerance}): kept fp32 only")
        else:
            res.update(kept=True, _files=qpaths)
        return res

    def _calibration_feeds(self, family: str, job: ExportJob, args: OnnxExportArgs
                           ) -> list[dict[str, np.ndarray]]:
        ds = job.data.dataset("train")
        feeds = []
        for i in range(min(args.calibration_utterances, len(ds))):
            b = job.data.collate([ds[i]])
            f = b["features"].float()
            n = b["feature_lengths"].to(torch.int64)
            if family == "classifier":
                feeds.append({"features": f.numpy(), "feature_lengths": n.numpy()})
            else:
                feeds.append({"audio_signal": f.transpose(1, 2).contiguous().numpy(), "length": n.numpy()})
        return feeds

    # -- latency report ------------------------------------------------------------------------
    def _bench(self, family: str, model: nn.Module, job: ExportJob, out: Path, args: OnnxExportArgs,
               report: dict[str, Any]) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        candidates = [("teacher (PyTorch)", job.teacher), ("student (PyTorch)", model)]
        if family == "classifier":
            split = "test"
            batches = [job.data.collate([job.data.dataset(split)[i]])
                       for i in range(min(args.bench_utterances, len(job.data.dataset(split))))]
            seconds = sum(float(b["feature_lengths"][0]) * 0.01 for b in batches)
            with bench.one_thread():
                for name, m in candidates:
                    if m is None:
                        continue
                    try:
                        with torch.no_grad():
                            t = bench.timed(lambda m=m: [m(b) for b in batches])
                    except Exception:
                        continue  # a teacher of another modality (e.g. text): not comparable
                    rows.append(_row(name, m, None, t, len(batches), seconds))
            for tag, p in (("student ONNX fp32", out / "model.onnx"),
                           ("student ONNX int8", out / "model.int8.onnx")):
                if not p.exists():
                    continue
                sess = parity.session(p, args.threads)
                feeds = [{"features": b["features"].float().numpy(),
                          "feature_lengths": b["feature_lengths"].to(torch.int64).numpy()} for b in batches]
                t = bench.timed(lambda s=sess, fs=feeds: [s.run(None, f) for f in fs])
                rows.append(_row(tag, None, [p], t, len(batches), seconds))
        else:
            from compressor.data.features import fbank

            utts = parity.load_utterances(job.data, "test", args.bench_utterances)
            seconds = sum(len(u.wave) for u in utts) / 16000.0
            frontend = "nemo" if family == "rnnt" else "nemo_ctc"

            def feats_of(u: parity.Utterance) -> torch.Tensor:
                try:
                    f = fbank(torch.from_numpy(u.wave), 16000, frontend=frontend)  # type: ignore[arg-type]
                except ValueError:  # the data layer has no such front end: features as given
                    return u.features
                if report.get("normalize_type") == "per_feature":
                    from compressor.data.features import per_feature_normalize

                    f = per_feature_normalize(f)
                return f

            with bench.one_thread():
                for name, m in candidates:
                    if m is None:
                        continue
                    try:
                        fam = graphs.model_family(m, {}, "")
                    except UserError:
                        continue
                    if fam != family:
                        continue  # a teacher of another family is not comparable transcript for transcript
                    t = bench.timed(lambda m=m, fam=fam: [parity.torch_greedy(fam, m, feats_of(u))
                                                          for u in utts])
                    rows.append(_row(name, m, None, t, len(utts), seconds))
            ids = parity.token_lookup(job.data.info["tokens"])
            for tag, suffix in (("student ONNX fp32", ""), ("student ONNX int8", ".int8")):
                named = _named(out, family, suffix)
                if not all(p.exists() for p in named.values()):
                    continue
                rec = parity.sherpa_recognizer(family, named, out / "tokens.txt", threads=args.threads)
                t = bench.timed(lambda r=rec: parity.sherpa_decode(r, [u.wave for u in utts], ids))
                rows.append(_row(tag, None, list(named.values()), t, len(utts), seconds))
        return {"rows": rows, "threads": args.threads, "audio_seconds": seconds,
                "note": "PyTorch rows: fbank + greedy decode in torch; ONNX rows: sherpa-onnx from the "
                        "waveform (its own fbank + greedy decode)" if family != "classifier" else
                        "from features: PyTorch forward vs onnxruntime session"}


def _row(name: str, model: nn.Module | None, files: list[Path] | None, seconds_total: float, n: int,
         audio_seconds: float) -> dict[str, Any]:
    if model is not None:
        params = sum(p.numel() for p in model.parameters())
        size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    else:
        params = None
        size = bench.file_size(files or [])
    return {"variant": name, "params": params, "size_mb": size / 1e6,
            "latency_ms": 1000 * seconds_total / max(1, n), "rtf": seconds_total / max(1e-9, audio_seconds)}


def _named(out: Path, family: str, suffix: str = "") -> dict[str, Path]:
    if family == "rnnt":
        return {k: out / f"{k}{suffix}.onnx" for k in ("encoder", "decoder", "joiner")}
    return {"model": out / f"model{suffix}.onnx"}


def summary_markdown(report: dict[str, Any]) -> str:
    """The export section of a run's ``summary.md``."""
    lines = [f"## Export (onnx, {report['family']})", ""]
    par = report["parity"]
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in par["max_abs_diff"].items())
    lines.append(f"- onnx.checker: passed; onnxruntime vs PyTorch max |diff|: {diffs} (atol {par['atol']})")
    if "transcripts" in report:
        t = report["transcripts"]
        lines.append(f"- sherpa-onnx vs PyTorch greedy on {t['utterances']} test utterances: exact match "
                     f"{t['exact_match']:.1%}, WER sherpa {t['wer_sherpa']:.2%} / "
                     f"PyTorch {t['wer_pytorch']:.2%}")
    if "classification" in report:
        c = report["classification"]
        lines.append(f"- onnxruntime vs PyTorch on {c['examples']} test examples: "
                     f"agreement {c['agreement']:.1%}, "
                     f"accuracy ONNX {c['accuracy_onnx']:.2%} / PyTorch {c['accuracy_pytorch']:.2%}")
    fe = report.get("frontend")
    if fe and fe["match"] is False:
        lines.append(f"- front end: the data's features are '{fe['data']}' but sherpa-onnx computes "
                     f"'{fe['sherpa_onnx']}' features for this model type: on-device input differs")
    q = report["int8"]
    if "metric" in q:
        methods = ", ".join(sorted(set(q["methods"].values())))
        lines.append(f"- int8 ({methods}): {q['metric']} {q['int8']:.2%} vs "
                     f"fp32 {q['fp32']:.2%} on valid; size {q['size_int8'] / 1e6:.2f} MB vs "
                     f"{q['size_fp32'] / 1e6:.2f} MB; " + ("kept" if q["kept"] else q["reason"]))
    else:
        lines.append(f"- int8: {q.get('reason')}")
    st = report.get("streaming")
    if st and st.get("exported"):
        lines.append(f"- streaming (`{st['file']}`, sherpa-onnx OnlineRecognizer, chunks of "
                     f"{st['chunk_frames']} frames): exact match with the PyTorch streaming decode "
                     f"{st['exact_match_vs_pytorch_streaming']:.1%}, with the offline decode "
                     f"{st['match_vs_offline']:.1%}; WER online {st['wer_online_sherpa']:.2%} vs offline "
                     f"{st['wer_offline_pytorch']:.2%} ({st['frontend_note']})")
        if st.get("wer_online_int8") is not None:
            lines.append(f"- streaming int8: WER online {st['wer_online_int8']:.2%}; "
                         + ("kept (`encoder.streaming.int8.onnx`)" if st["int8_kept"] else st["int8_reason"]))
        else:
            lines.append(f"- streaming int8: {st['int8_reason']}")
    elif st:
        lines.append(f"- streaming: {st['note']}")
    lines += ["", "| variant | params | size (MB) | latency/utt (ms) | RTF |", "|---|---|---|---|---|"]
    for r in report["benchmark"]["rows"]:
        params = f"{r['params']:,}" if r["params"] is not None else "-"
        lines.append(f"| {r['variant']} | {params} | {r['size_mb']:.2f} | {r['latency_ms']:.1f} "
                     f"| {r['rtf']:.4f} |")
    lines += ["", f"1 thread; {report['benchmark']['note']}. Plot: `export/export_report.png`.", ""]
    return "\n".join(lines)
