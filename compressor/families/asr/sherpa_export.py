"""What the ASR families decoded by sherpa-onnx share: tokens.txt, transcript parity, WER, latency rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from compressor.core.errors import UserError
from compressor.export import bench, graphs, parity
from compressor.export.family import Artefact, FamilyExport, Figure
from compressor.export.frontend import same_features, sherpa_fbank
from compressor.families.asr import greedy


class SherpaASRExport(FamilyExport):
    """Base of ASR families whose files sherpa-onnx's ``OfflineRecognizer`` decodes from the waveform."""

    metric: ClassVar[str] = "wer"
    higher_is_better: ClassVar[bool] = False
    check_key: ClassVar[str] = "transcripts"
    decode_example: ClassVar[str] = "transcribe_sherpa.py"
    #: the front end sherpa-onnx's offline recognizer computes for this family
    offline_frontend: ClassVar[str] = ""
    model_type: ClassVar[str] = ""

    # -- what a subclass supplies ---------------------------------------------------------------
    def offline_files(self, suffix: str = "") -> dict[str, Path]:
        """Call argument -> path of the offline recognizer's model files."""
        raise NotImplementedError

    def offline_call(self) -> tuple[str, dict[str, Any]]:
        """The sherpa-onnx constructor and its non-file arguments."""
        raise NotImplementedError

    def any_artefact_matches(self) -> bool:
        """Whether some artefact's runtime computes the training front end (else parity must fail loudly)."""
        return same_features(self.data_frontend, self.offline_frontend) is not False

    # -- shared ---------------------------------------------------------------------------------
    @property
    def tokens(self) -> list[str]:
        return list(self.info["tokens"])

    @property
    def blank(self) -> int:
        return len(self.tokens) - 1

    def side_files(self) -> list[Path]:
        tokens = self.info.get("tokens")
        vocab = int(self.model.vocab_size)
        if not tokens or len(tokens) != vocab:
            raise UserError(f"the data's token list ({len(tokens or [])} tokens) does not match the "
                            f"model's vocabulary ({vocab}): cannot write tokens.txt")
        return [graphs.write_tokens(tokens, self.out / "tokens.txt")]

    def recognizer(self, suffix: str = "", threads: int | None = None) -> Any:
        """sherpa-onnx's offline recognizer on the files ``<name><suffix>.onnx``; ``threads`` defaults to the
        command's (:func:`compressor.core.threads.thread_count`)."""
        import sherpa_onnx

        from compressor.core.threads import thread_count

        call, kwargs = self.offline_call()
        factory = getattr(sherpa_onnx.OfflineRecognizer, call.rsplit(".", 1)[-1])
        files = {k: str(v) for k, v in self.offline_files(suffix).items()}
        return factory(**files, tokens=str(self.out / "tokens.txt"),
                       num_threads=threads if threads is not None else thread_count(), **kwargs)

    def reference_features(self, utt: parity.Utterance, runtime_frontend: str) -> torch.Tensor:
        """What PyTorch decodes to compare with a runtime computing ``runtime_frontend``.

        The data's own features where they are that front end (so the check covers the data layer's front
        end too) or where no artefact matches the training front end (so the mismatch fails loudly);
        otherwise the runtime's front end computed from the waveform (the check then covers the graphs, and
        the WER shows the model on the features this runtime computes).
        """
        if same_features(self.data_frontend, runtime_frontend) is not False or not self.any_artefact_matches():
            return utt.features
        feats = sherpa_fbank(utt.wave, 16000, runtime_frontend)
        if self.normalize_type == "per_feature":
            from compressor.data.features import per_feature_normalize

            feats = per_feature_normalize(feats)
        return feats

    def wer(self, hyps: list[list[int]], utts: list[parity.Utterance]) -> tuple[float, float]:
        from compressor.families.asr.metrics import ErrorCounter, detokenize

        counter = ErrorCounter()
        for u, ids in zip(utts, hyps):
            counter.add(detokenize(ids, self.tokens, self.blank), u.text)
        return counter.wer, counter.cer

    def check(self) -> dict[str, Any]:
        args = self.args
        utts = parity.load_utterances(self.job.data, "test", args.decode_utterances)
        torch_ids = greedy.torch_greedy_all(
            self.name, self.model, [self.reference_features(u, self.offline_frontend) for u in utts],
            desc="export check: PyTorch greedy decode (test)")
        rec = self.recognizer()
        sherpa_ids = parity.sherpa_decode(rec, [u.wave for u in utts], parity.token_lookup(self.tokens),
                                          desc="export check: sherpa-onnx decode (test)")
        n = len(utts)
        match = sum(a == b for a, b in zip(torch_ids, sherpa_ids)) / max(1, n)
        wer_t, cer_t = self.wer(torch_ids, utts)
        wer_s, cer_s = self.wer(sherpa_ids, utts)
        matched = same_features(self.data_frontend, self.offline_frontend)
        res = {"split": "test", "utterances": n, "split_size": self.split_size("test"),
               "exact_match": match, "wer_pytorch": wer_t, "wer_sherpa": wer_s, "cer_pytorch": cer_t,
               "cer_sherpa": cer_s, "nonempty_pytorch": sum(bool(a) for a in torch_ids) / max(1, n),
               "runtime_frontend": self.offline_frontend, "frontend_matches_training": matched,
               "pytorch_features": "data" if matched is not False or not self.any_artefact_matches()
               else f"{self.offline_frontend} (the runtime's, from the waveform)"}
        if match < args.min_transcript_match:
            if matched is False:
                hint = (f"; the data's features use the '{self.data_frontend}' front end but sherpa-onnx computes "
                        f"'{self.offline_frontend}' features for this model type (train with "
                        f"data.frontend={self.offline_frontend})")
            else:
                hint = ("; check that the data's features match sherpa-onnx's front end for this model type "
                        "(compressor.export.frontend)")
            raise UserError(f"parity failed: sherpa-onnx transcripts equal the PyTorch greedy ones for only "
                            f"{match:.0%} of {n} test utterances (need {args.min_transcript_match:.0%}){hint}")
        return res

    def quality(self, suffix: str, split: str, limit: int) -> Figure:
        utts = parity.load_utterances(self.job.data, split, limit)
        rec = self.recognizer(suffix)
        hyps = parity.sherpa_decode(rec, [u.wave for u in utts], parity.token_lookup(self.tokens),
                                    desc=f"export int8 guard: sherpa-onnx {'int8' if suffix else 'fp32'} ({split})")
        return self.figure(self.wer(hyps, utts)[0], split, len(utts))

    def calibration_feed(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"audio_signal": batch["features"].float().transpose(1, 2).contiguous().numpy(),
                "length": batch["feature_lengths"].to(torch.int64).numpy()}

    def manifest_fields(self) -> dict[str, Any]:
        return {"tokens": "tokens.txt", "vocab_size": len(self.tokens), "blank_id": self.blank,
                "blank_token": self.tokens[-1]}

    def offline_artefact(self, report: dict[str, Any]) -> Artefact:
        call, kwargs = self.offline_call()
        files = {k: p.name for k, p in self.offline_files().items()}
        files["tokens"] = "tokens.txt"
        int8 = None
        if report.get("int8", {}).get("kept"):
            int8 = {**{k: p.name for k, p in self.offline_files(".int8").items()}, "tokens": "tokens.txt"}
        t = report.get("transcripts", {})
        figures = {}
        if t:
            figures["wer"] = Figure(t["wer_sherpa"], t["split"], t["utterances"], t["split_size"])
        matched = same_features(self.data_frontend, self.offline_frontend)
        note = ""
        if matched is False:
            note = (f"sherpa-onnx's offline recognizer computes '{self.offline_frontend}' features, the model "
                    f"was trained on '{self.trained_on}': its WER here is measured on those features")
        return Artefact("offline", "sherpa-onnx", f"sherpa_onnx.OfflineRecognizer.{call}", files,
                        {"num_threads": 1, **kwargs}, self.model_type, self.offline_frontend, "runtime",
                        matched, int8, None, figures, note)

    def bench_rows(self, report: dict[str, Any]) -> tuple[list[dict[str, Any]], Figure, str]:
        from compressor.data.features import fbank

        args = self.args
        utts = parity.load_utterances(self.job.data, "test", args.bench_utterances)
        seconds = sum(len(u.wave) for u in utts) / 16000.0
        rows: list[dict[str, Any]] = []

        def feats_of(u: parity.Utterance) -> torch.Tensor:
            try:
                f = fbank(torch.from_numpy(u.wave), 16000, frontend=self.data_frontend)  # type: ignore[arg-type]
            except (ValueError, TypeError):  # the data layer has no such front end: features as given
                return u.features
            if self.normalize_type == "per_feature":
                from compressor.data.features import per_feature_normalize

                f = per_feature_normalize(f)
            return f

        threads = bench.latency_threads(args.threads)
        with bench.torch_threads(threads):
            for label, m in (("teacher (PyTorch)", self.job.teacher), (self.variant("(PyTorch)"), self.model)):
                if m is None or not type(self).detect(m, {}, ""):
                    continue  # a teacher of another family is not comparable transcript for transcript
                t = bench.timed(lambda m=m: [greedy.torch_greedy(self.name, m, feats_of(u)) for u in utts])
                rows.append(bench.row(label, m, None, t, len(utts), seconds))
        ids = parity.token_lookup(self.tokens)
        for label, suffix in ((self.variant("ONNX fp32"), ""), (self.variant("ONNX int8"), ".int8")):
            files = self.offline_files(suffix)
            if not all(p.exists() for p in files.values()):
                continue
            rec = self.recognizer(suffix, threads=threads)
            t = bench.timed(lambda r=rec: parity.sherpa_decode(r, [u.wave for u in utts], ids))
            rows.append(bench.row(label, None, list(files.values()), t, len(utts), seconds))
        note = ("PyTorch rows: fbank + greedy decode in torch; ONNX rows: sherpa-onnx from the waveform (its own "
                "fbank + greedy decode)")
        return rows, self.figure(0.0, "test", len(utts)), note

    def rate_rows(self, report: dict[str, Any], rows: list[dict[str, Any]]) -> Figure | None:
        """WER of every variant on the utterances of the transcript check (the first ``decode_utterances`` of
        the test split): PyTorch rows on the data's features, ONNX rows decoded by sherpa-onnx from the
        waveform. Figures the check and the streaming export measured are reused."""
        t = report.get(self.check_key) or {}
        if not t:
            return None
        utts = parity.load_utterances(self.job.data, "test", self.args.decode_utterances)
        ids = parity.token_lookup(self.tokens)
        by_variant = {"teacher (PyTorch)": self.job.teacher, self.variant("(PyTorch)"): self.model}
        for row in rows:
            variant = row["variant"]
            quality = None
            if variant == self.variant("(PyTorch)") and t.get("pytorch_features") == "data":
                quality = t["wer_pytorch"]
            elif by_variant.get(variant) is not None:
                hyps = greedy.torch_greedy_all(self.name, by_variant[variant], [u.features for u in utts],
                                               desc=f"export chart: {variant} WER (test)")
                quality = self.wer(hyps, utts)[0]
            elif variant == self.variant("ONNX fp32"):
                quality = t["wer_sherpa"]
            elif variant == self.variant("ONNX int8"):
                hyps = parity.sherpa_decode(self.recognizer(".int8"), [u.wave for u in utts], ids,
                                            desc=f"export chart: {variant} WER (test)")
                quality = self.wer(hyps, utts)[0]
            elif variant == self.variant("ONNX streaming"):
                quality = (report.get("streaming") or {}).get("wer_online_sherpa")
            row["quality"] = quality
        return self.figure(0.0, "test", len(utts))

    @classmethod
    def summary_lines(cls, report: dict[str, Any]) -> list[str]:
        t = report["transcripts"]
        cover = Figure(0, t["split"], t["utterances"], t["split_size"]).coverage()
        lines = [f"- sherpa-onnx vs PyTorch greedy (offline recognizer, {cls.model_type}) on {cover}: exact match "
                 f"{t['exact_match']:.1%}, WER sherpa {t['wer_sherpa']:.2%} / PyTorch {t['wer_pytorch']:.2%}"]
        if t.get("frontend_matches_training") is False:
            lines.append(f"- front end: sherpa-onnx's offline recognizer computes '{t['runtime_frontend']}' "
                         f"features but the model was trained on '{report['frontend']['data']}' (PyTorch above decoded "
                         f"the runtime's features, so the WER shows the model on the features this runtime computes)")
        return lines
