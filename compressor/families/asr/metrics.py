"""Token ids -> text, and word/character error rates (``torchaudio.functional.edit_distance``)."""

from __future__ import annotations

from collections.abc import Sequence

from torchaudio.functional import edit_distance

WORD_BOUNDARIES = ("▁", "|", "<space>")


def detokenize(ids: Sequence[int], tokens: Sequence[str] | None, blank_id: int | None = None) -> str:
    """Join token strings; sentencepiece ``▁``, ``|`` and ``<space>`` mark word boundaries.

    Without a token table, ids are written as space-separated numbers (each id a "word").
    """
    if tokens is None:
        return " ".join(str(i) for i in ids if i != blank_id)
    pieces = []
    for i in ids:
        if i == blank_id or i < 0 or i >= len(tokens):
            continue
        piece = tokens[i]
        if piece.startswith("<") and piece.endswith(">") and piece != "<space>":
            continue  # <blk>, <unk>, <sos/eos>: not text
        for mark in WORD_BOUNDARIES:
            piece = piece.replace(mark, " ")
        pieces.append(piece)
    return " ".join("".join(pieces).split())


class ErrorCounter:
    """Accumulates word and character edit distances over utterances."""

    def __init__(self) -> None:
        self.word_errors = 0
        self.words = 0
        self.char_errors = 0
        self.chars = 0
        self.utterances = 0

    def add(self, hypothesis: str, reference: str) -> None:
        ref_words, hyp_words = reference.split(), hypothesis.split()
        self.word_errors += edit_distance(ref_words, hyp_words)
        self.words += len(ref_words)
        ref_chars, hyp_chars = list(" ".join(ref_words)), list(" ".join(hyp_words))
        self.char_errors += edit_distance(ref_chars, hyp_chars)
        self.chars += len(ref_chars)
        self.utterances += 1

    @property
    def wer(self) -> float:
        return self.word_errors / max(1, self.words)

    @property
    def cer(self) -> float:
        return self.char_errors / max(1, self.chars)


def wer(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus word error rate: total word edit distance / total reference words."""
    counter = ErrorCounter()
    for h, r in zip(hypotheses, references, strict=True):
        counter.add(h, r)
    return counter.wer
