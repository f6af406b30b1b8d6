"""Sequence-level knowledge distillation (Kim & Rush 2016): the student learns the teacher's transcripts.

At the start of the stage the named teacher (any transcribing teacher: ``whisper_ct2``, ``onnx_whisper``,
``hf_speech``, ``onnx_transducer``, ``onnx_ctc``) transcribes every training utterance once. Transcripts are kept
on disk, keyed by the teacher's file hashes and each waveform's sha256
(:class:`compressor.transcripts.TranscriptStore`), so later stages, runs
and resumes read them instead of running the teacher, and the teacher is unloaded before training
starts. Each transcript is mapped onto the student's units (:func:`compressor.transcripts.to_units`: lower
case, punctuation dropped, numbers spelled out); one that cannot be mapped (a character outside the alphabet,
an empty transcript) or whose confidence is below ``min_confidence`` is dropped and counted. The student (CTC or
RNN-T) then trains on the teacher's transcripts in place of the references, for a ``pseudo_fraction`` share of
the utterances (chosen once per utterance); utterances without a usable transcript are left out of training
(``unmapped: drop``) or keep their reference (``unmapped: reference``).

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

from compressor.context import StageContext
from compressor.errors import UserError
from compressor.hookspecs import hookimpl
from compressor.registry import Args, Registry
from compressor.spec import CheckContext
from compressor.strategy import Augmentation, Strategy


def chosen(uid: str, fraction: float, seed: int) -> bool:
    """Whether utterance ``uid`` trains on the teacher's transcript (a stable draw per utterance and seed)."""
    if fraction >= 1.0:
        return True
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

    class Args(Args):
        teacher: str = "teacher"
        pseudo_fraction: float = Field(default=1.0, gt=0, le=1, description="share of the training utterances "
                                       "that learn the teacher's transcript; the rest keep their reference")
        min_confidence: float | None = Field(
            default=None, le=0, description="drop transcripts whose mean token log-probability is lower")
        unmapped: Literal["drop", "reference"] = Field(
            default="drop", description="utterances without a usable transcript: left out, or trained on their "
                                        "reference")
        cache_dir: str | None = Field(default=None, description="where transcripts are kept (default: the project "
                                                                "cache's teacher_transcripts/)")

    def __init__(self, args: Args) -> None:
        super().__init__(args)
        self.targets: dict[str, tuple[list[int], str]] = {}
        self.dropped: set[str] = set()
        self.report: dict[str, Any] = {}
        self.logged = False

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        check.require_model(args.teacher, "teacher")
        if args.teacher in check.stage.train or args.teacher == check.stage.forward_model:
            raise check.error(f"'{args.teacher}' is trained in this stage; the teacher must be frozen", "teacher")
        task = check.spec.task.name
        if task not in ("ctc", "rnnt"):
            raise check.error(f"sequence_kd trains speech recognisers (task ctc or rnnt), not '{task}'")
        from compressor.transcripts import is_transcriber

        built = check.try_build_model(args.teacher)
        if built is not None and not is_transcriber(built):
            family = check.spec.all_models()[args.teacher].name
            raise check.error(f"teacher '{args.teacher}' ({family}) cannot transcribe audio; name a whisper_ct2, "
                              f"onnx_whisper, hf_speech, onnx_transducer or onnx_ctc teacher", "teacher")
        keys = check.data_info().get("batch_keys")
        if keys is not None and "ids" not in keys:
            raise check.error("sequence_kd needs utterance ids (batch key 'ids'), which this stage's data lacks")

    @classmethod
    def augments(cls, args: Args) -> Augmentation:
        return Augmentation(keys=frozenset({"tokens", "token_lengths", "text"}))

    # -- stage start: transcribe once ----------------------------------------------------------------
    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        from compressor.engine import cache_dir
        from compressor.progress import say
        from compressor.transcripts import TranscriptStore, is_transcriber, score, to_units, transcribe_utterances

        args = self.args
        teacher = ctx.model(args.teacher)
        if not is_transcriber(teacher):
            raise UserError(f"sequence_kd: model '{args.teacher}' ({type(teacher).__name__}) cannot transcribe "
                            f"audio; name a whisper_ct2, onnx_whisper, hf_speech, onnx_transducer or onnx_ctc teacher")
        train = ctx.data.datasets.get("train")
        utts = list(getattr(train, "utts", []) or [])
        tokenizer = getattr(ctx.data, "tokenizer", None)
        if not utts or tokenizer is None:
            raise UserError("sequence_kd needs a speech corpus with audio files and a tokenizer as training data")
        language = str(ctx.data.info.get("language", "en"))
        store_dir = cache_dir() / "teacher_transcripts" if args.cache_dir is None else Path(args.cache_dir)
        store = TranscriptStore(store_dir, teacher.fingerprint())
        start = time.perf_counter()
        hyps, stats = transcribe_utterances(teacher, utts, store)
        wall = time.perf_counter() - start
        release = getattr(teacher, "release", None)
        if callable(release):
            release()  # the transcripts are all the stage needs: the teacher leaves memory
        self.targets, self.dropped = {}, set()
        unmapped = low = 0
        mapped_hyps, mapped_refs = [], []
        for u, hyp in zip(utts, hyps):
            if hyp is None:
                self.dropped.add(u.id)
                continue
            if args.min_confidence is not None and hyp.confidence < args.min_confidence:
                self.dropped.add(u.id)
                low += 1
                continue
            text = to_units(hyp.text, language)
            ids: list[int] | None = None
            if text is not None:
                try:
                    ids = tokenizer.encode(text)
                except (ValueError, KeyError):
                    ids = None
            if not ids:
                self.dropped.add(u.id)
                unmapped += 1
                continue
            self.targets[u.id] = (ids, text)
            mapped_hyps.append(hyp)
            mapped_refs.append(u.text)
        quality = score(mapped_hyps, mapped_refs, language) if mapped_hyps else {"wer": 1.0, "cer": 1.0}
        confidences = [h.confidence for h in hyps if h is not None]
        self.report = {
            "teacher": args.teacher, "utterances": len(utts), "pseudo_labelled": len(self.targets),
            "dropped_unmapped": unmapped, "dropped_low_confidence": low, "unreadable": stats.unreadable,
            "pseudo_label_wer": round(quality["wer"], 4), "pseudo_label_cer": round(quality["cer"], 4),
            "mean_confidence": round(sum(confidences) / len(confidences), 4) if confidences else None,
            "cached": stats.cached, "transcribed": stats.transcribed,
            "teacher_seconds_per_utterance": round(stats.seconds_per_utterance, 4),
            "transcripts_seconds": round(wall, 2), "store": str(store.path), "notes": stats.notes,
        }
        self.logged = False
        if ctx.is_main:
            ctx.run_dir.mkdir(parents=True, exist_ok=True)
            (ctx.run_dir / "sequence_kd.json").write_text(json.dumps(self.report, indent=1), encoding="utf-8")
        say(f"sequence_kd: {len(self.targets)}/{len(utts)} utterances pseudo-labelled by '{args.teacher}' "
              f"({unmapped} unmapped, {low} below min_confidence, {stats.unreadable} unreadable dropped); "
              f"pseudo-label WER {100 * quality['wer']:.1f}%; {stats.cached} from the cache, {stats.transcribed} "
              f"transcribed at {stats.seconds_per_utterance:.3f} s/utterance", enabled=ctx.is_main)

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
        for i, uid in enumerate(ids):
            use = chosen(uid, args.pseudo_fraction, ctx.seed)
            if use and uid in self.targets:
                target, text = self.targets[uid]
                pseudo += 1
            elif use and uid in self.dropped and args.unmapped == "drop":
                continue
            else:
                target = old_tokens[i, : int(old_lengths[i])].tolist()
                text = batch["text"][i] if "text" in batch else ""
            rows.append(target)
            texts.append(text)
            keep.append(i)
        if not keep:  # every utterance of the batch was dropped: train on the references rather than nothing
            return
        blank = int(ctx.data.info.get("blank_id", 0))
        tokens = torch.full((len(rows), max(1, max(len(r) for r in rows))), blank, dtype=old_tokens.dtype)
        for j, r in enumerate(rows):
            tokens[j, : len(r)] = torch.tensor(r, dtype=old_tokens.dtype)
        if len(keep) != len(ids):
            select_rows(batch, keep)
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
