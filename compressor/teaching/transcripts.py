"""Teacher transcripts of a corpus, computed once and kept on disk; their mapping onto a student's units; a
teacher's WER on a split.

The teachers that transcribe audio (``whisper_ct2``: :mod:`compressor.external.whisper_ct2`; ``onnx_transducer`` and
``onnx_ctc``: :mod:`compressor.external.onnx_sherpa`) offer ``transcribe(waves) -> list[Transcript]`` on 16 kHz mono
waveforms and ``fingerprint()`` (a hash of their files and decoding settings); the ``sequence_kd`` strategy trains
a student on their transcripts.

:class:`TranscriptStore` is a small keyed store: one JSON file per teacher, named by the teacher's
``fingerprint()`` (a hash of its files and decoding settings), mapping the sha256 of each utterance's waveform to
``[text, confidence]``. A teacher that changes, or audio that changes, is a miss; the file is rewritten
atomically, so a killed run leaves either the old or the new store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

FORMAT = "compressor-teacher-transcripts/1"


@dataclass(frozen=True)
class Transcript:
    """A teacher's transcript of one utterance; ``confidence`` is its mean token log-probability (<= 0)."""

    text: str
    confidence: float


# -- onto the student's units --------------------------------------------------------------------------------
# A pre-trained recogniser writes "Turn on 2 lights."; a character or SentencePiece student trained on the corpus's
# normalised text needs "turn on two lights".
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?:st|nd|rd|th)?")
_NUM2WORDS_LANG = {"en": "en", "de": "de", "es": "es", "ru": "ru"}


def _spell(match: re.Match[str], language: str) -> str:
    from num2words import num2words

    token = match.group(0)
    lang = _NUM2WORDS_LANG.get(language, "en")
    ordinal = token[-2:] in ("st", "nd", "rd", "th")
    digits = token[:-2] if ordinal else token
    if re.fullmatch(r"\d{1,3}(,\d{3})+", digits):  # 1,000,000: thousands separators
        digits = digits.replace(",", "")
    digits = digits.replace(",", ".")
    try:
        if ordinal:
            return " " + num2words(int(digits), lang=lang, to="ordinal") + " "
        return " " + num2words(float(digits) if "." in digits else int(digits), lang=lang) + " "
    except (ValueError, NotImplementedError, OverflowError):
        return token


def spell_numbers(text: str, language: str = "en") -> str:
    """Digits -> words (``"2nd"`` -> ``"second"``, ``"1,000"`` -> ``"one thousand"``), hyphens kept apart."""
    out = _NUMBER.sub(lambda m: _spell(m, language), text)
    return out.replace("-", " ")


#: British -> American spellings (English): a teacher trained on both writes either, a corpus uses one. Whole
#: words only; the common ``-our``/``-ise``/``-tre``/``-ogue`` families and a few frequent single words.
SPELLING_EN: dict[str, str] = {
    "colour": "color", "colours": "colors", "favour": "favor", "favourite": "favorite", "honour": "honor",
    "labour": "labor", "neighbour": "neighbor", "neighbours": "neighbors", "behaviour": "behavior",
    "harbour": "harbor", "humour": "humor", "flavour": "flavor", "rumour": "rumor", "vapour": "vapor",
    "centre": "center", "centres": "centers", "theatre": "theater", "metre": "meter", "metres": "meters",
    "litre": "liter", "litres": "liters", "fibre": "fiber", "realise": "realize", "realised": "realized",
    "organise": "organize", "organised": "organized", "recognise": "recognize", "recognised": "recognized",
    "apologise": "apologize", "analyse": "analyze", "catalogue": "catalog", "dialogue": "dialog",
    "travelled": "traveled", "travelling": "traveling", "cancelled": "canceled", "grey": "gray",
    "defence": "defense", "licence": "license", "offence": "offense", "programme": "program",
    "jewellery": "jewelry", "tyre": "tire", "tyres": "tires", "plough": "plow", "cheque": "check",
    "aluminium": "aluminum", "mum": "mom", "towards": "toward",
}
#: spelling maps per language (the student's corpus spelling is the target)
SPELLINGS: dict[str, dict[str, str]] = {"en": SPELLING_EN}


def respell(text: str, language: str = "en") -> str:
    """Map spelling variants word by word onto the corpus's spelling (:data:`SPELLINGS`; English: British ->
    American). ``text`` is already lower case."""
    table = SPELLINGS.get(language)
    if not table:
        return text
    return " ".join(table.get(w, w) for w in text.split())


def to_units(text: str, language: str = "en", alphabet: str | None = None) -> str | None:
    """``text`` normalised as the corpus's transcripts are (lower case, no punctuation, numbers as words through
    ``num2words``, British spellings made American: :func:`respell`), or None when it is empty or has a character
    outside ``alphabet`` (default: the language's letters), so the caller can drop the utterance and count it."""
    from compressor.data.text import ALPHABETS, normalize

    letters = set(alphabet if alphabet is not None else ALPHABETS.get(language, ALPHABETS["en"]))
    text = normalize(spell_numbers(text.replace("%", " percent ").replace("&", " and "), language))
    text = respell(" ".join(w.strip("'") for w in text.split() if w.strip("'")), language)
    if not text or any(ch not in letters for ch in text.replace(" ", "")):
        return None
    return text


# -- the store ------------------------------------------------------------------------------------------------
class TranscribingTeacher(Protocol):
    """What a teacher needs to give transcripts (see the module docstring)."""

    def fingerprint(self) -> str: ...

    def transcribe(self, waves: Sequence[torch.Tensor]) -> list[Transcript]: ...


def is_transcriber(model: Any) -> bool:
    """Whether ``model`` can transcribe audio (``whisper_ct2``, ``onnx_whisper``, ``onnx_transducer``, ``onnx_ctc``,
    ``hf_speech``)."""
    return callable(getattr(model, "transcribe", None)) and callable(getattr(model, "fingerprint", None))


def audio_hash(wave: torch.Tensor) -> str:
    """sha256 of a waveform's float32 samples."""
    return hashlib.sha256(wave.detach().cpu().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()


class TranscriptStore:
    """Transcripts of one teacher, keyed by audio hash, in ``folder/<fingerprint[:24]>.json``."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.path = Path(folder) / f"{fingerprint[:24]}.json"
        self.fingerprint = fingerprint
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        self.note: str | None = None
        if self.path.exists():
            try:
                stored = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                self.note = f"unreadable transcript store ignored ({type(e).__name__})"
                return
            if stored.get("format") == FORMAT and stored.get("fingerprint") == fingerprint:
                self.entries = dict(stored.get("entries", {}))
            else:
                self.note = "transcript store of another teacher ignored"

    def get(self, key: str) -> Transcript | None:
        row = self.entries.get(key)
        return None if row is None else Transcript(str(row[0]), float(row[1]))

    def put(self, key: str, transcript: Transcript) -> None:
        self.entries[key] = [transcript.text, transcript.confidence]
        self.dirty = True

    def flush(self) -> None:
        """Write the store atomically (temporary file + rename) when it changed."""
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"format": FORMAT, "fingerprint": self.fingerprint, "entries": self.entries}, f)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.dirty = False


@dataclass
class TranscribeStats:
    """What one pass over a list of utterances cost."""

    utterances: int = 0
    cached: int = 0
    transcribed: int = 0
    unreadable: int = 0
    seconds: float = 0.0  # spent in the teacher
    audio_seconds: float = 0.0  # of the audio it transcribed
    notes: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)  # seconds of each utterance's audio (0 when unreadable)

    @property
    def seconds_per_utterance(self) -> float:
        return self.seconds / self.transcribed if self.transcribed else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"utterances": self.utterances, "cached": self.cached, "transcribed": self.transcribed,
                "unreadable": self.unreadable, "teacher_seconds": round(self.seconds, 3),
                "seconds_per_utterance": round(self.seconds_per_utterance, 4),
                "real_time_factor": round(self.seconds / self.audio_seconds, 4) if self.audio_seconds else 0.0}


def transcribe_utterances(teacher: TranscribingTeacher, utts: Sequence[Any], store: TranscriptStore | None,
                          flush_every: int = 50) -> tuple[list[Transcript | None], TranscribeStats]:
    """Transcripts of ``utts`` (records with ``audio``, ``offset``, ``duration``: a corpus's utterances), from
    ``store`` where it has them; None for audio that cannot be read."""
    from compressor.core.progress import Progress
    from compressor.data.audio import SAMPLE_RATE, AudioError, load_audio

    stats = TranscribeStats(utterances=len(utts))
    if store is not None and store.note:
        stats.notes.append(store.note)
    out: list[Transcript | None] = []
    with Progress("teacher transcripts", total=len(utts), unit="utterance") as bar:
        for u in utts:
            try:
                wave = load_audio(u.audio, offset=u.offset, duration=u.duration if u.offset else None)
            except AudioError:
                out.append(None)
                stats.durations.append(0.0)
                stats.unreadable += 1
                bar.update(1)
                continue
            stats.durations.append(wave.numel() / SAMPLE_RATE)
            key = audio_hash(wave)
            got = store.get(key) if store is not None else None
            if got is not None:
                stats.cached += 1
            else:
                start = time.perf_counter()
                got = teacher.transcribe([wave])[0]
                stats.seconds += time.perf_counter() - start
                stats.audio_seconds += wave.numel() / SAMPLE_RATE
                stats.transcribed += 1
                if store is not None:
                    store.put(key, got)
                    if stats.transcribed % flush_every == 0:
                        store.flush()
            out.append(got)
            bar.update(1)
    if store is not None:
        store.flush()
    return out, stats


def word_error_rate(hypothesis: str, reference: str, language: str = "en") -> float:
    """WER of one transcript against another, both normalised as :func:`score` does (1.0 against an empty
    reference with any hypothesis, 0.0 when both are empty)."""
    from compressor.data.text import normalize
    from compressor.families.asr.metrics import ErrorCounter

    ref = respell(normalize(spell_numbers(reference, language)), language)
    hyp = respell(normalize(spell_numbers(hypothesis, language)), language)
    if not ref.split():
        return 0.0 if not hyp.split() else 1.0
    counter = ErrorCounter()
    counter.add(hyp, ref)
    return counter.wer


def score(hypotheses: Sequence[Transcript | None], references: Sequence[str], language: str = "en"
          ) -> dict[str, float]:
    """WER/CER of teacher transcripts against references, both normalised as the corpus is (numbers as words);
    an unreadable utterance counts as an empty hypothesis."""
    from compressor.data.text import normalize
    from compressor.families.asr.metrics import ErrorCounter

    counter = ErrorCounter()
    for hyp, ref in zip(hypotheses, references, strict=True):
        text = "" if hyp is None else respell(normalize(spell_numbers(hyp.text, language)), language)
        counter.add(text, respell(normalize(spell_numbers(ref, language)), language))
    return {"wer": counter.wer, "cer": counter.cer, "words": counter.words}


def evaluate_teacher(spec: str | Path, model: str = "teacher", split: str = "test", limit: int | None = None,
                     overrides: list[str] | None = None, store_dir: Path | None = None) -> dict[str, Any]:
    """Transcribe a split of a spec's data with the spec's model ``model`` (a transcribing teacher) and score it.

    Returns WER, CER, counts and the teacher's seconds per utterance (cached transcripts cost nothing)."""
    from compressor.core.errors import UserError
    from compressor.data.cache import default_cache_dir
    from compressor.plugins import get_registry
    from compressor.spec import load_spec

    loaded = load_spec(spec, overrides or [])
    models = loaded.spec.all_models()
    if model not in models:
        raise UserError(f"{spec}: no model '{model}' (models: {', '.join(models)})")
    registry = get_registry()
    data = registry.get("dataset", loaded.spec.data.name).factory(loaded.data_args, cache_dir=default_cache_dir(),
                                                                    seed=loaded.spec.seed)
    if split not in data.datasets:
        raise UserError(f"{spec}: the data has no split '{split}' (splits: {', '.join(data.datasets)})")
    utts = list(getattr(data.datasets[split], "utts", []))
    if not utts:
        raise UserError(f"{spec}: split '{split}' has no utterances with audio to transcribe")
    utts = utts[:limit] if limit else utts
    entry = registry.get("model", models[model].name)
    teacher = entry.factory(loaded.model_args[model], info=data.info)
    if not is_transcriber(teacher):
        raise UserError(f"{spec}: model '{model}' ({models[model].name}) cannot transcribe audio")
    store = TranscriptStore(store_dir or default_cache_dir() / "teacher_transcripts", teacher.fingerprint())
    hyps, stats = transcribe_utterances(teacher, utts, store)
    result = score(hyps, [u.text for u in utts], str(data.info.get("language", "en")))
    return {"model": model, "family": models[model].name, "split": split, **result, **stats.as_dict(),
            "examples": [{"id": u.id, "ref": u.text, "hyp": h.text if h else None}
                         for u, h in list(zip(utts, hyps))[:5]]}
