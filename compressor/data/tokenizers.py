"""Tokenizers: characters (per-language alphabets) and SentencePiece word pieces.

Both follow the project's token convention: real tokens are ids ``0..V-2`` and the blank ``<blk>`` is the
LAST id (``V-1``), written on the last line of ``tokens.txt`` in sherpa-onnx's ``token id`` format. The word
boundary is ``▁`` (U+2581), as in SentencePiece, so a token never contains whitespace and sherpa-onnx turns
it back into a space when it joins tokens into text.
"""

from __future__ import annotations

import io
from pathlib import Path

from compressor.core.errors import UserError
from compressor.data.text import alphabet

BLANK = "<blk>"
WORD_BOUNDARY = "\u2581"


class Tokenizer:
    """Text <-> ids. ``tokens`` lists every token in id order, blank last."""

    kind = "base"
    tokens: list[str]

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def blank_id(self) -> int:
        return len(self.tokens) - 1

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        pieces = [self.tokens[i] for i in ids if 0 <= i < self.blank_id]
        return "".join(pieces).replace(WORD_BOUNDARY, " ").strip()

    def write_tokens(self, path: str | Path) -> Path:
        """Write ``tokens.txt`` (``token id`` per line, sherpa-onnx format)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{tok} {i}\n" for i, tok in enumerate(self.tokens)), encoding="utf-8")
        return path


def read_tokens(path: str | Path) -> list[str]:
    """Tokens of a sherpa-onnx ``tokens.txt``, in id order."""
    out: dict[int, str] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise UserError(f"{path}:{n}: expected 'token id', got {line!r}")
        out[int(parts[1])] = parts[0]
    return [out[i] for i in range(len(out))]


class CharTokenizer(Tokenizer):
    """One token per letter of the language's alphabet, ``▁`` between words, ``<blk>`` last."""

    kind = "char"

    def __init__(self, language: str = "en") -> None:
        self.language = language
        self.tokens = [WORD_BOUNDARY, *alphabet(language), BLANK]
        self._index = {t: i for i, t in enumerate(self.tokens)}

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for word in text.split():
            if out:
                out.append(self._index[WORD_BOUNDARY])
            for ch in word:
                try:
                    out.append(self._index[ch])
                except KeyError:
                    raise ValueError(f"character {ch!r} is not in the {self.language} alphabet") from None
        return out


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece word pieces (unigram or BPE) trained on the corpus text; ``<blk>`` appended last."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes) -> None:
        import sentencepiece as spm

        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.tokens = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())] + [BLANK]

    @classmethod
    def train(cls, texts: list[str], vocab_size: int = 64, model_type: str = "unigram",
              seed: int = 0) -> SentencePieceTokenizer:
        """Train on ``texts``; ``vocab_size`` counts the blank. ``<unk>`` is id 0 (SentencePiece's own)."""
        import sentencepiece as spm

        if not texts:
            raise UserError("cannot train a SentencePiece model on an empty corpus")
        buf = io.BytesIO()
        try:
            _train_spm(spm, texts, buf, vocab_size, model_type)
        except RuntimeError as e:
            raise UserError(f"SentencePiece training failed for vocab_size={vocab_size}: "
                            f"{str(e).split(') ')[-1]}") from None
        return cls(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> SentencePieceTokenizer:
        return cls(Path(path).read_bytes())

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.model_proto)
        return path

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text, out_type=int))


def _train_spm(spm: object, texts: list[str], buf: io.BytesIO, vocab_size: int, model_type: str) -> None:
    spm.SentencePieceTrainer.train(  # type: ignore[attr-defined]
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size - 1,
        model_type=model_type, character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0,
        hard_vocab_limit=True, num_threads=1, minloglevel=2,
    )


class TeacherTokenizer(Tokenizer):
    """A teacher's output units adopted as the data's tokens (``tokenizer: {from_teacher: NAME}``).

    ``tokens`` are the teacher's units in its output order with the blank last (the family that loads the
    teacher maps its own convention onto this one); single characters are encoded one by one, words joined by
    ``▁``. Letters match case-insensitively when the teacher has one case only (an upper-case wav2vec 2.0
    vocabulary serves lower-case transcripts)."""

    kind = "teacher"

    def __init__(self, tokens: list[str], teacher: str = "teacher") -> None:
        self.tokens = list(tokens)
        self.teacher = teacher
        self._index = {t: i for i, t in enumerate(self.tokens[:-1])}
        if WORD_BOUNDARY not in self._index:
            raise UserError(f"the vocabulary of '{teacher}' has no word boundary (a space, '|' or '▁'): "
                            f"its transcripts cannot be written with it")
        for t, i in list(self._index.items()):
            if len(t) == 1 and t.isalpha():
                self._index.setdefault(t.lower(), i)
                self._index.setdefault(t.upper(), i)

    def unknown(self, text: str) -> list[str]:
        """Characters of ``text`` (spaces aside) that no unit of the teacher writes, in order of appearance."""
        return list(dict.fromkeys(ch for ch in text if not ch.isspace() and ch not in self._index))

    def encode(self, text: str) -> list[int]:
        bad = self.unknown(text)
        if bad:
            raise ValueError(f"characters {''.join(bad)!r} are not in the vocabulary of '{self.teacher}'")
        out: list[int] = []
        for word in text.split():
            if out:
                out.append(self._index[WORD_BOUNDARY])
            out.extend(self._index[ch] for ch in word)
        return out

    def decode(self, ids: list[int]) -> str:
        pieces = [self.tokens[i] for i in ids if 0 <= i < self.blank_id]
        return "".join(p for p in pieces if not (p.startswith("<") and p.endswith(">"))).replace(
            WORD_BOUNDARY, " ").strip().lower()


def build_tokenizer(kind: str, language: str, texts: list[str], vocab_size: int, seed: int = 0) -> Tokenizer:
    if kind == "char":
        return CharTokenizer(language)
    if kind in ("sentencepiece", "bpe", "unigram"):
        model_type = "bpe" if kind == "bpe" else "unigram"
        return SentencePieceTokenizer.train(texts, vocab_size=vocab_size, model_type=model_type, seed=seed)
    raise UserError(f"unknown tokenizer '{kind}' (tokenizers: char, sentencepiece, bpe, unigram)")
