"""Sequence-level knowledge distillation (Kim & Rush 2016): the student learns the teacher's transcripts.

At the start of the stage the named teacher (any transcribing teacher: ``whisper_ct2``, ``onnx_whisper``,
``hf_speech``, ``onnx_transducer``, ``onnx_ctc``) transcribes every training utterance once. Transcripts are kept
on disk, keyed by the teacher's file hashes and each waveform's sha256
(:class:`compressor.teaching.transcripts.TranscriptStore`), so later stages, runs
and resumes read them instead of running the teacher, and the teacher is unloaded before training
starts. Each transcript is mapped onto the student's units (:func:`compressor.teaching.transcripts.to_units`: lower
case, punctuation dropped, numbers spelled out); one that cannot be mapped (a character outside the alphabet,
an empty transcript) or whose confidence is below ``min_confidence`` is dropped and counted. The student (CTC or
RNN-T) then trains on the teacher's transcripts in place of the references, for a ``pseudo_fraction`` share of
the utterances (chosen once per utterance); utterances without a usable transcript are left out of training
(``unmapped: drop``) or keep their reference (``unmapped: reference``).

Audio without transcripts (the data's ``unlabelled`` folders or manifests, or ``hide_labels``) trains on its
pseudo-label whatever ``pseudo_fraction`` says, and is left out when its pseudo-label is dropped; with
``pseudo_fraction: 0`` the labelled utterances keep their references (semi-supervised training). The teacher may
be a project recogniser of the run (trained in an earlier stage: greedy transcripts of its ``ctc``/``rnnt`` task,
:mod:`compressor.teaching.pseudo_labels`), so pseudo-labels combine with logit KD, lattice KD or module replacing
from it.
Filters (each counted in ``sequence_kd.json`` and in ``summary.md``): ``min_confidence``, ``chars_per_second``,
``agree_with`` + ``max_disagreement`` (a second transcriber, e.g. the teacher's int8/ONNX export), ``max_wer``
(against the reference, where the utterance has one).

Spec::

    teacher: {name: whisper_ct2}
    stages:
      - name: distil
        train: [student]
        frozen: [teacher]
        plugins:
          - {name: sequence_kd, teacher: teacher, pseudo_fraction: 1.0, min_confidence: -1.0}

The counts, the teacher's time per utterance and the pseudo-labels' WER against the references go to the run's
metrics (``seqkd_*`` on the first step) and to ``sequence_kd.json`` in the run directory.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from compressor.core.context import StageContext
from compressor.core.errors import UserError
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.core.strategy import Augmentation, Strategy
from compressor.spec import CheckContext


def chosen(uid: str, fraction: float, seed: int) -> bool:
    """Whether utterance ``uid`` trains on the teacher's transcript (a stable draw per utterance and seed)."""
    if fraction >= 1.0:
        return True
    if fraction <= 0.0:
        return False
    digest = hashlib.sha256(f"{seed}:{uid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def select_rows(batch: dict[str, Any], keep: list[int]) -> None:
    """Keep only rows ``keep`` of every per-utterance entry of ``batch`` (tensors and lists), in place."""
    n = len(batch["ids"])
    index = torch.tensor(keep, dtype=torch.long)
    for key, value in list(batch.items()):
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
            batch[key] = value.index_select(0, index.to(value.device))
        elif isinstance(value, list) and len(value) == n:
            batch[key] = [value[i] for i in keep]


class SequenceKD(Strategy):
    """Train the student on a frozen teacher's transcripts (computed once, cached), mapped to its units."""

    name = "sequence_kd"
    labels_audio = True  # audio without transcripts trains on the teacher's pseudo-labels

    class Args(Args):
        teacher: str = "teacher"
        pseudo_fraction: float = Field(default=1.0, ge=0, le=1, description="share of the training utterances "
                                       "with a transcript that learn the teacher's instead; the rest keep their "
                                       "reference (audio without a transcript always learns the teacher's; 0: "
                                       "only it does)")
        min_confidence: float | None = Field(
            default=None, le=0, description="drop transcripts whose mean token log-probability is lower")
        unmapped: Literal["drop", "reference"] = Field(
            default="drop", description="utterances without a usable transcript: left out, or trained on their "
                                        "reference")
        cache_dir: str | None = Field(default=None, description="where transcripts are kept (default: the project "
                                                                "cache's teacher_transcripts/)")
        chars_per_second: tuple[float, float] | None = Field(
            default=None, description="[low, high]: drop transcripts whose letters per second of audio fall "
                                      "outside (a teacher's repetition loops, its truncations)")
        agree_with: str | None = Field(default=None, description="a second transcribing model (an int8 or ONNX "
                                       "export of the teacher, another decode setting): drop transcripts on which "
                                       "the two disagree by more than max_disagreement")
        max_disagreement: float = Field(default=0.2, ge=0, description="largest word error rate between the "
                                        "teacher's and agree_with's transcripts")
        max_wer: float | None = Field(default=None, ge=0, description="drop transcripts whose word error rate "
                                      "against the utterance's reference is higher (only utterances with a "
                                      "reference are judged)")

    def __init__(self, args: Args) -> None:
        super().__init__(args)
        self.targets: dict[str, tuple[list[int], str]] = {}
        self.dropped: set[str] = set()
        self.report: dict[str, Any] = {}
        self.stores: dict[str, str] = {}  # model -> its transcript store's file
        self.logged = False

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        check.require_model(args.teacher, "teacher")
        if args.teacher in check.stage.train or args.teacher == check.stage.forward_model:
            raise check.error(f"'{args.teacher}' is trained in this stage; the teacher must be frozen", "teacher")
        task = check.spec.task.name
        if task not in ("ctc", "rnnt"):
            raise check.error(f"sequence_kd trains speech recognisers (task ctc or rnnt), not '{task}'")
        from compressor.teaching.transcripts import is_transcriber

        cps = args.chars_per_second
        if cps is not None and not 0 <= cps[0] <= cps[1]:
            raise check.error(f"chars_per_second must be [low, high] with 0 <= low <= high, got {list(cps)}",
                              "chars_per_second")
        for key in ("teacher", "agree_with"):
            name = getattr(args, key)
            if name is None:
                continue
            if key == "agree_with":
                check.require_model(name, key)
                if name in check.stage.train:
                    raise check.error(f"'{name}' is trained in this stage; agree_with names a frozen model", key)
            built = check.try_build_model(name)
            outputs = check.model_outputs(name)
            decodable = isinstance(built, torch.nn.Module) and (
                outputs is None or {"ctc": "log_probs", "rnnt": "logits"}[task] in outputs)
            if built is not None and not is_transcriber(built) and not decodable:
                family = check.spec.all_models()[name].name
                raise check.error(f"model '{name}' ({family}) cannot transcribe audio; name a project recogniser "
                                  f"or a whisper_ct2, onnx_whisper, hf_speech, onnx_transducer or onnx_ctc teacher",
                                  key)
        keys = check.data_info().get("batch_keys")
        if keys is not None and "ids" not in keys:
            raise check.error("sequence_kd needs utterance ids (batch key 'ids'), which this stage's data lacks")

    @classmethod
    def augments(cls, args: Args) -> Augmentation:
        return Augmentation(keys=frozenset({"tokens", "token_lengths", "text"}))

    # -- stage start: transcribe once ----------------------------------------------------------------
    def _transcripts(self, ctx: StageContext, name: str, utts: list[Any], store_dir: Path
                     ) -> tuple[list[Any], Any, bool]:
        """Transcripts of ``utts`` by model ``name``: an external teacher through its store, or a project model
        decoded greedily; the pass's statistics; whether the model was a project model."""
        from compressor.teaching.pseudo_labels import project_transcripts
        from compressor.teaching.transcripts import (
            TranscribeStats,
            TranscriptStore,
            is_transcriber,
            transcribe_utterances,
        )

        model = ctx.model(name)
        if is_transcriber(model):
            store = TranscriptStore(store_dir, model.fingerprint())
            hyps, stats = transcribe_utterances(model, utts, store)
            self.stores[name] = str(store.path)
            release = getattr(model, "release", None)
            if callable(release):
                release()  # the transcripts are all the stage needs: the teacher leaves memory
            return hyps, stats, False
        if ctx.task.name not in ("ctc", "rnnt") or not isinstance(model, torch.nn.Module):
            raise UserError(f"sequence_kd: model '{name}' ({type(model).__name__}) cannot transcribe audio; name a "
                            f"project recogniser or a whisper_ct2, onnx_whisper, hf_speech, onnx_transducer or "
                            f"onnx_ctc teacher")
        start = time.perf_counter()
        hyps = project_transcripts(model, ctx.task, ctx.data, "train")
        seconds = time.perf_counter() - start
        stats = TranscribeStats(utterances=len(utts), transcribed=len(utts), seconds=seconds)
        stats.durations = [float(n) * 0.01 for n in ctx.data.dataset("train").lengths]  # 10 ms frames
        return hyps, stats, True

    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        from compressor.core.progress import say
        from compressor.data.cache import default_cache_dir
        from compressor.teaching.pseudo_labels import FilterCounts, judge, markdown, measured_reference, reference_of
        from compressor.teaching.transcripts import score, to_units

        args = self.args
        train = ctx.data.datasets.get("train")
        utts = list(getattr(train, "utts", []) or [])
        tokenizer = getattr(ctx.data, "tokenizer", None)
        if not utts or tokenizer is None:
            raise UserError("sequence_kd needs a speech corpus with audio files and a tokenizer as training data")
        if hasattr(ctx.data, "include_unlabelled"):
            ctx.data.include_unlabelled = True  # audio without transcripts trains on its pseudo-labels
        language = str(ctx.data.info.get("language", "en"))
        store_dir = default_cache_dir() / "teacher_transcripts" if args.cache_dir is None else Path(args.cache_dir)
        start = time.perf_counter()
        hyps, stats, project = self._transcripts(ctx, args.teacher, utts, store_dir)
        seconds = stats.durations if len(stats.durations) == len(utts) else [0.0] * len(utts)
        seconds = [s if s > 0 else float(u.duration or 0.0) for s, u in zip(seconds, utts)]
        second_pass: list[Any] = [None] * len(utts)  # the agree_with model's transcripts
        if args.agree_with is not None:
            second_pass, _, _ = self._transcripts(ctx, args.agree_with, utts, store_dir)
        wall = time.perf_counter() - start
        self.targets, self.dropped = {}, set()
        counts = FilterCounts()
        counts.active |= {f for f, on in (("min_confidence", args.min_confidence is not None),
                                          ("chars_per_second", args.chars_per_second is not None),
                                          ("agreement", args.agree_with is not None),
                                          ("reference_wer", args.max_wer is not None)) if on}
        mapped_hyps, mapped_refs = [], []
        for u, hyp, second, dur in zip(utts, hyps, second_pass, seconds):
            text = to_units(hyp.text, language) if hyp is not None else None
            ids: list[int] | None = None
            if text is not None:
                try:
                    ids = tokenizer.encode(text)
                except (ValueError, KeyError):
                    ids = None
            if not ids:
                text = None
            keep = judge(counts, hyp, text, dur, second, reference_of(u), min_confidence=args.min_confidence,
                         cps=args.chars_per_second, max_disagreement=args.max_disagreement if args.agree_with
                         else None, max_wer=args.max_wer, language=language)
            if not keep:
                self.dropped.add(u.id)
                continue
            assert ids is not None and text is not None and hyp is not None
            self.targets[u.id] = (ids, text)
            ref = measured_reference(u)
            if ref is not None:
                mapped_hyps.append(hyp)
                mapped_refs.append(ref)
        quality = score(mapped_hyps, mapped_refs, language) if mapped_hyps else {"wer": 1.0, "cer": 1.0}
        confidences = [h.confidence for h in hyps if h is not None]
        dropped = dict(counts.dropped)
        self.report = {
            "teacher": args.teacher, "project_teacher": project, "utterances": len(utts),
            "unlabelled": sum(not getattr(u, "labelled", True) for u in utts),
            "pseudo_labelled": len(self.targets),
            "dropped_unmapped": dropped["unmapped"], "dropped_low_confidence": dropped["min_confidence"],
            "unreadable": dropped["unreadable"], "filters": counts.rows(),
            "filter_settings": {"min_confidence": args.min_confidence,
                                "chars_per_second": list(args.chars_per_second) if args.chars_per_second else None,
                                "agreement": f"{args.agree_with} within WER {args.max_disagreement}"
                                if args.agree_with else None, "reference_wer": args.max_wer},
            "pseudo_label_wer": round(quality["wer"], 4), "pseudo_label_cer": round(quality["cer"], 4),
            "pseudo_label_references": len(mapped_refs),
            "mean_confidence": round(sum(confidences) / len(confidences), 4) if confidences else None,
            "cached": stats.cached, "transcribed": stats.transcribed,
            "teacher_seconds_per_utterance": round(stats.seconds_per_utterance, 4),
            "transcripts_seconds": round(wall, 2), "store": self.stores.get(args.teacher), "notes": stats.notes,
        }
        self.logged = False
        if ctx.is_main:
            ctx.run_dir.mkdir(parents=True, exist_ok=True)
            (ctx.run_dir / "sequence_kd.json").write_text(json.dumps(self.report, indent=1), encoding="utf-8")
            sections = ctx.run_dir / "sections"
            sections.mkdir(exist_ok=True)
            (sections / f"pseudo_labels_{ctx.index}_{ctx.name}.md").write_text(markdown(self.report),
                                                                                encoding="utf-8")
        kept = ", ".join(f"{r['filter']} -{r['dropped']}" for r in counts.rows())
        say(f"sequence_kd: {len(self.targets)}/{len(utts)} utterances pseudo-labelled by '{args.teacher}' "
            f"(dropped: {kept}); pseudo-label WER {100 * quality['wer']:.1f}% against {len(mapped_refs)} references; "
            f"{stats.cached} from the cache, {stats.transcribed} transcribed at {stats.seconds_per_utterance:.3f} "
            f"s/utterance", enabled=ctx.is_main)

    @hookimpl
    def compressor_finalize_student(self, ctx: StageContext) -> None:
        if hasattr(ctx.data, "include_unlabelled"):
            ctx.data.include_unlabelled = False  # later stages without a labeller leave unlabelled audio out

    # -- per batch: the teacher's transcripts replace the references -----------------------------------
    @hookimpl
    def compressor_transform_batch(self, ctx: StageContext, batch: dict[str, Any]) -> None:
        if not ctx.training or "ids" not in batch:
            return
        args = self.args
        ids = [str(i) for i in batch["ids"]]
        old_tokens, old_lengths = batch["tokens"], batch["token_lengths"]
        rows: list[list[int]] = []
        texts: list[str] = []
        keep: list[int] = []
        pseudo = 0
        labelled = batch.get("labelled")
        for i, uid in enumerate(ids):
            has_reference = labelled is None or bool(labelled[i])
            use = chosen(uid, args.pseudo_fraction, ctx.seed) or not has_reference
            if use and uid in self.targets:
                target, text = self.targets[uid]
                pseudo += 1
            elif use and (not has_reference or (uid in self.dropped and args.unmapped == "drop")):
                continue  # no usable pseudo-label, and no reference to fall back on (or not wanted)
            else:
                target = old_tokens[i, : int(old_lengths[i])].tolist()
                text = batch["text"][i] if "text" in batch else ""
            rows.append(target)
            texts.append(text)
            keep.append(i)
        if not keep:  # every utterance of the batch was dropped: train on its labelled ones rather than nothing
            if labelled is not None and bool(labelled.any()):
                select_rows(batch, [i for i in range(len(ids)) if bool(labelled[i])])
                batch.pop("labelled", None)
            return
        blank = int(ctx.data.info.get("blank_id", 0))
        tokens = torch.full((len(rows), max(1, max(len(r) for r in rows))), blank, dtype=old_tokens.dtype)
        for j, r in enumerate(rows):
            tokens[j, : len(r)] = torch.tensor(r, dtype=old_tokens.dtype)
        if len(keep) != len(ids):
            select_rows(batch, keep)
        batch.pop("labelled", None)
        batch["tokens"] = tokens.to(old_tokens.device)
        batch["token_lengths"] = torch.tensor([len(r) for r in rows], dtype=old_lengths.dtype,
                                              device=old_lengths.device)
        batch["text"] = texts
        ctx.log_scalar("seqkd_pseudo_share", pseudo / len(ids))
        if not self.logged:
            for key in ("pseudo_labelled", "dropped_unmapped", "dropped_low_confidence", "pseudo_label_wer",
                        "teacher_seconds_per_utterance", "cached", "transcribed"):
                ctx.log_scalar(f"seqkd_{key}", float(self.report.get(key) or 0.0))
            self.logged = True


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", SequenceKD.name, SequenceKD)
