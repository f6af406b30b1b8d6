"""Pseudo-labels: a project model's greedy transcripts of a corpus, and the filters that decide which teacher
transcripts a student may learn.

A *project teacher* is a recogniser of the run itself (an ``rnnt_lstm`` or a CTC model trained in an earlier
stage, or loaded through ``init_from``). :func:`project_transcripts` decodes the training split's clean features
with it (greedy, as the run's task decodes) and gives each transcript a confidence: its mean token
log-probability (CTC: the best path's log-probability over its emitted frames; RNN-T: ``-loss / tokens`` of the
decoded sequence, i.e. log P(y|x) per token). A project teacher changes with training, so its transcripts are not
kept on disk: they are recomputed at each stage start (one greedy pass over features).

The filters (:class:`FilterCounts` counts what each keeps and drops, in order): ``unreadable`` audio,
``min_confidence`` (mean token log-probability), ``unmapped`` (the normaliser cannot write the transcript in the
student's units),
``chars_per_second`` (the transcript's letters per second of audio, outside ``[low, high]``: catches a teacher's
repetition loops and its truncations; measured against the audio's duration, which every utterance has, not
against a reference, which most do not), ``agreement`` (word error rate between the teacher's and a second
decode's transcript above ``max_disagreement``) and ``reference_wer`` (distil-whisper's filter: word error rate
against the utterance's reference above ``max_wer``; only utterances with a visible reference are judged, the
others pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from compressor.teaching.transcripts import Transcript

#: the filters in the order they are applied
FILTERS = ("unreadable", "min_confidence", "unmapped", "chars_per_second", "agreement", "reference_wer")


@dataclass
class FilterCounts:
    """Utterances each filter saw, kept and dropped (each utterance counted by the first filter that drops it)."""

    seen: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTERS, 0))
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTERS, 0))
    active: set[str] = field(default_factory=lambda: {"unreadable", "unmapped"})

    def judge(self, name: str, passes: bool) -> bool:
        """Count one utterance through filter ``name``; whether it passes."""
        self.seen[name] += 1
        if not passes:
            self.dropped[name] += 1
        return passes

    def rows(self) -> list[dict[str, Any]]:
        """One row per filter in use: ``{filter, seen, kept, dropped}``."""
        return [{"filter": f, "seen": self.seen[f], "kept": self.seen[f] - self.dropped[f], "dropped": self.dropped[f]}
                for f in FILTERS if f in self.active]


def chars_per_second(text: str, seconds: float) -> float:
    """Letters (spaces excluded) of ``text`` per second of audio (inf for audio of no length)."""
    letters = len(text.replace(" ", ""))
    return letters / seconds if seconds > 0 else float("inf")


def _features(split: Any, i: int) -> torch.Tensor:
    from compressor.data.features import per_feature_normalize

    feats = split.features[i]
    return per_feature_normalize(feats) if getattr(split, "normalize", "none") == "per_feature" else feats


@torch.no_grad()
def project_transcripts(model: nn.Module, task: Any, data: Any, split: str = "train", batch_size: int = 16
                        ) -> list[Transcript]:
    """Greedy transcripts of every utterance of ``data``'s ``split`` by the project model ``model`` (a model the
    run's ``ctc`` or ``rnnt`` task decodes), in the split's order, each with its mean token log-probability."""
    from compressor.core.errors import UserError
    from compressor.core.task import to_device
    from compressor.families.asr.metrics import detokenize

    ds = data.dataset(split)
    tokens = data.info.get("tokens")
    blank = int(data.info.get("blank_id", 0))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    out: list[Transcript] = []
    try:
        for start in range(0, len(ds), batch_size):
            idx = list(range(start, min(len(ds), start + batch_size)))
            items = [{"features": _features(ds, i), "tokens": [], "text": "", "id": ds.utts[i].id} for i in idx]
            batch = to_device(data.collate(items), device)
            if task.name == "ctc":
                outputs = task.forward(model, batch)
                log_probs = outputs["log_probs"].float()
                best, path = log_probs.max(-1)
                hyps, confs = [], []
                for row, scores, n in zip(path.cpu(), best.cpu(), outputs["logit_lengths"].cpu().tolist()):
                    ids, picked, prev = [], [], None
                    for t in range(int(n)):
                        k = int(row[t])
                        if k != blank and k != prev:
                            ids.append(k)
                            picked.append(float(scores[t]))
                        prev = k
                    hyps.append(ids)
                    confs.append(sum(picked) / len(picked) if picked else 0.0)
            elif task.name == "rnnt":
                from compressor.families.rnnt.loss import rnnt_loss_torch

                hyps = task.decode(model, batch)
                lengths = torch.tensor([len(h) for h in hyps], dtype=torch.int64)
                targets = torch.full((len(hyps), max(1, int(lengths.max()))), blank, dtype=torch.int64)
                for j, h in enumerate(hyps):
                    targets[j, : len(h)] = torch.tensor(h, dtype=torch.int64)
                batch["tokens"], batch["token_lengths"] = targets.to(device), lengths.to(device)
                outputs = task.forward(model, batch)
                nll = rnnt_loss_torch(outputs["logits"], batch["tokens"], outputs["logit_lengths"],
                                      batch["token_lengths"], blank, reduction="none").cpu()
                confs = [-float(nll[j]) / max(1, len(h)) for j, h in enumerate(hyps)]
            else:
                raise UserError(f"a project teacher transcribes under the ctc or rnnt task, not '{task.name}'")
            out.extend(Transcript(detokenize(h, tokens, blank), c) for h, c in zip(hyps, confs))
    finally:
        model.train(was_training)
    return out


def reference_of(utt: Any) -> str | None:
    """The utterance's visible reference (None for audio without a transcript)."""
    return utt.text if getattr(utt, "labelled", True) and utt.text else None


def measured_reference(utt: Any) -> str | None:
    """A reference to *measure* a pseudo-label against: the visible one, or one hidden by ``hide_labels``."""
    return reference_of(utt) or getattr(utt, "hidden_text", None)


def markdown(report: dict[str, Any]) -> str:
    """The ``summary.md`` section of a pseudo-labelling report (``sequence_kd.json``)."""
    lines = ["## Pseudo-labels", "",
             f"Teacher `{report['teacher']}` labelled {report['utterances']} training utterances "
             f"({report.get('unlabelled', 0)} without a transcript); {report['pseudo_labelled']} pseudo-labels "
             f"kept. {report.get('cached', 0)} from the transcript store, {report.get('transcribed', 0)} "
             f"transcribed at {report.get('teacher_seconds_per_utterance', 0.0):.3f} s/utterance.", "",
             "| filter | setting | seen | kept | dropped |", "|---|---|---:|---:|---:|"]
    settings = report.get("filter_settings", {})
    for row in report.get("filters", []):
        lines.append(f"| {row['filter']} | {settings.get(row['filter'], '-')} | {row['seen']} | {row['kept']} | "
                     f"{row['dropped']} |")
    wer = report.get("pseudo_label_wer")
    refs = report.get("pseudo_label_references", 0)
    if refs:
        lines += ["", f"Pseudo-label WER of the kept labels against {refs} references (visible or hidden): "
                      f"{100 * wer:.2f}% (CER {100 * report.get('pseudo_label_cer', 0.0):.2f}%)."]
    else:
        lines += ["", "No references to measure the pseudo-labels against."]
    return "\n".join(lines) + "\n"


def judge(counts: FilterCounts, hyp: Transcript | None, text: str | None, seconds: float,
          second: Transcript | None, reference: str | None, *, min_confidence: float | None,
          cps: Sequence[float] | None, max_disagreement: float | None, max_wer: float | None,
          language: str) -> bool:
    """Run one utterance through the filters in order (:data:`FILTERS`), counting; whether it is kept.
    ``text`` is the transcript in the student's units (None when unmapped); ``second`` the second decode
    (None without ``agree_with``)."""
    from compressor.teaching.transcripts import word_error_rate

    if not counts.judge("unreadable", hyp is not None):
        return False
    assert hyp is not None
    if min_confidence is not None and not counts.judge("min_confidence", hyp.confidence >= min_confidence):
        return False
    if not counts.judge("unmapped", text is not None):
        return False
    assert text is not None
    if cps is not None and not counts.judge("chars_per_second", cps[0] <= chars_per_second(text, seconds) <= cps[1]):
        return False
    if max_disagreement is not None:
        agree = second is not None and word_error_rate(text, second.text, language) <= max_disagreement
        if not counts.judge("agreement", agree):
            return False
    if max_wer is not None and reference is not None:
        if not counts.judge("reference_wer", word_error_rate(text, reference, language) <= max_wer):
            return False
    return True
