"""The synthetic dataset components a spec can name: ``commands`` (an SLU corpus), ``read_speech`` and
``shifted``.

Factories follow the registry contract ``factory(args, *, cache_dir, seed) -> DataModule``. Synthetic
corpora depend on their own ``seed`` argument (not the run's seed), so every spec naming the same corpus
settings shares one cached corpus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from compressor.core.errors import UserError
from compressor.core.limits import check_fits, free_disk_bytes, human_bytes
from compressor.corpora import grammars
from compressor.corpora.build import build_corpus, corpus_dir
from compressor.corpora.corpus import SPLITS as SYNTHETIC_SPLITS
from compressor.corpora.corpus import CorpusSettings, split_speakers
from compressor.corpora.voices import wide_by_default
from compressor.data.cache import default_cache_dir
from compressor.data.datasets import Language, cache_path
from compressor.data.formats import read_nemo_manifest
from compressor.data.lhotse_io import write_cuts
from compressor.data.speech import SpeechDataModule
from compressor.data.speech_args import SpeechArgs
from compressor.data.speech_build import build_speech_module, speech_info
from compressor.data.utterance import Utterance

# ------------------------------------------------------------------------------------------------
# Synthetic corpora
# ------------------------------------------------------------------------------------------------


class SyntheticArgs(SpeechArgs):
    """Synthetic corpora: valid/test speakers use voice variants no training speaker uses; ``test_seen`` has
    new utterances of the training speakers."""

    train_size: int = Field(default=2000, ge=1)
    valid_size: int = Field(default=250, ge=1)
    test_size: int = Field(default=250, ge=1, description="utterances of unseen voices")
    test_seen_size: int | None = Field(
        default=None, ge=1, description="utterances of training voices (new sentences); default: test_size"
    )
    num_speakers: int = Field(default=60, ge=3, description="speakers in all, valid and test speakers included")
    valid_speakers: int = Field(default=6, ge=1, description="validation speakers (held-out variants)")
    test_speakers: int = Field(default=8, ge=1, description="test speakers (other held-out variants)")
    seed: int = Field(default=0, description="corpus seed (sentences, speakers)")
    workers: int = Field(default=2, ge=1, description="synthesis processes (does not change the audio)")


class CommandsArgs(SyntheticArgs):
    """Fluent-Speech-Commands-like SLU corpus: 31 (action, object, location) intents, 248 phrasings."""

    train_size: int = Field(default=1200, ge=1)
    valid_size: int = Field(default=200, ge=1)
    test_size: int = Field(default=200, ge=1)
    recording: Literal["clean", "far"] = Field(
        default="clean", description="far: every split recorded far-field (white noise at 0-10 dB SNR and room "
        "reverberation), the same utterances as clean (seed 000's Smartlights 'far' analogue)")

    @property
    def setting(self) -> str:
        return "far" if self.recording == "far" else "small"


#: Defaults of the large read-speech setting (any of them may still be set explicitly).
LARGE_DEFAULTS = {"train_size": 8000, "valid_size": 400, "test_size": 500, "test_seen_size": 500,
                  "num_speakers": 300, "valid_speakers": 12, "test_speakers": 16}


class ReadSpeechArgs(SyntheticArgs):
    """Read speech per language: ``setting: small`` is a controlled grammar of tens of words (tests, quick
    runs); ``setting: large`` has thousands of words, more speakers, noisy and reverberant recordings and
    evaluation sentences never seen in training."""

    language: Language = "en"
    setting: Literal["small", "large"] = Field(
        default="small", description="small: controlled grammar | large: thousands of words, noise, reverb"
    )
    voices: Literal["narrow", "wide"] | None = Field(
        default=None, description="training voices: narrow (one accent, rates 130-225, pitches 30-70) | wide "
        "(every English accent, rates 110-260, pitches and pitch ranges 10-90); default: wide for large, narrow "
        "for small. Validation and test voices are the same held-out variants either way")
    blends: int = Field(
        default=0, ge=0, le=5000, description="blended voice variants added to the training variants: each takes "
        "its formants, pitch, echo, tone, voicing, breath... from training variants drawn by its number, then spreads "
        "them: formant frequencies up to 12%, formant heights, voicing and consonant levels (never a held-out "
        "variant's settings; docs/data.md#training-voices-wide-and-blended)")

    @model_validator(mode="after")
    def _large_defaults(self) -> ReadSpeechArgs:
        if self.setting == "large":
            for key, value in LARGE_DEFAULTS.items():
                if key not in self.model_fields_set:
                    object.__setattr__(self, key, value)
        if self.voices == "wide" and self.language != "en":
            raise ValueError(f"voices: wide is English only (every English accent espeak-ng has); "
                             f"language is {self.language!r}")
        return self


class ShiftedArgs(SyntheticArgs):
    """Shifted English conditions for adaptation: ``accent`` (en-gb-scotland, en-029, en-us-nyc, ...),
    ``domain`` (finance vocabulary) or ``variant`` (odd voices: klatt, croak, whisper, ...)."""

    condition: Literal["accent", "domain", "variant"] = Field(
        default="accent", description="accent (6 English accents) | domain (finance) | variant (odd voices)"
    )
    train_size: int = Field(default=600, ge=1)
    valid_size: int = Field(default=150, ge=1)
    test_size: int = Field(default=150, ge=1)
    num_speakers: int = Field(default=36, ge=3)


def _settings(kind: str, args: SyntheticArgs, language: str = "en", condition: str = "clean",
              setting: str = "small") -> CorpusSettings:
    voices = getattr(args, "voices", None) or ""
    if voices and (voices == "wide") == wide_by_default(kind, language, setting):
        voices = ""  # the setting's own default: the same corpus, the same cache
    return CorpusSettings(kind=kind, language=language, condition=condition, setting=setting,
                          train_size=args.train_size, valid_size=args.valid_size, test_size=args.test_size,
                          test_seen_size=args.test_seen_size, num_speakers=args.num_speakers,
                          valid_speakers=args.valid_speakers, test_speakers=args.test_speakers, seed=args.seed,
                          voices=voices, blends=getattr(args, "blends", 0))


def _synthetic(settings: CorpusSettings, args: SyntheticArgs, cache_dir: Path, seed: int,
               label_values: dict[str, list[str]] | None = None) -> SpeechDataModule:
    root = build_corpus(settings, cache_dir, workers=args.workers)
    splits: dict[str, list[Utterance]] = {}
    skips: list[dict[str, Any]] = []
    for split in SYNTHETIC_SPLITS:
        utts, bad = read_nemo_manifest(root / f"{split}.jsonl", split, strict=args.strict)
        splits[split], skips = utts, skips + bad
        lhotse_cuts(root, split, utts)
    return build_speech_module(splits, args, language=settings.language, cache_dir=cache_dir, seed=seed,
                               label_values=label_values, skipped=skips,
                               extra_info={"corpus_dir": str(root), "corpus": settings.dirname()})


def lhotse_cuts(root: Path, split: str, utts: list[Utterance]) -> Path | None:
    """The corpus's ``cuts_<split>.jsonl.gz`` beside its NeMo manifest (written when missing): the same
    utterances as lhotse cuts, with transcripts, speakers and labels (``custom``: ``intent``, ``slots``), for
    icefall or NeMo. Not part of the corpus's checksums; None when the cache cannot be written."""
    path = root / f"cuts_{split}.jsonl.gz"
    if not path.exists():
        try:
            write_cuts(utts, path)
        except OSError:
            return None
    return path


#: Disk a synthetic utterance takes in the cache: ~28 KB of 16 kHz FLAC and ~39 KB of fbank features,
#: measured on the shipped commands and read_speech corpora; the large read-speech setting's utterances are
#: twice as long and noisy (FLAC compresses them less): ~55 KB + ~80 KB measured.
BYTES_PER_UTTERANCE = 70_000
BYTES_PER_LARGE_UTTERANCE = 140_000


def synthetic_check(kind: str, language: str = "en", condition: str = "clean") -> Any:
    """The validation-time check of a synthetic corpus: its speakers exist, and it fits on the cache's disk."""
    def check(args: SyntheticArgs) -> None:
        lang = getattr(args, "language", language)
        cond = getattr(args, "condition", condition)
        settings = _settings(kind, args, lang, cond, getattr(args, "setting", "small"))
        split_speakers(settings)  # raises when the corpus asks for more speakers than exist
        cache = default_cache_dir()
        if (corpus_dir(settings, cache) / "DONE").exists():
            return
        n = sum(settings.sizes().values())
        per = BYTES_PER_LARGE_UTTERANCE if settings.setting == "large" else BYTES_PER_UTTERANCE
        problem = check_fits(n * per, free_disk_bytes(cache),
                             f"synthesising {n:,} utterances (~{human_bytes(per)} each)",
                             f"the free space of the cache {cache}")
        if problem:
            raise UserError(f"{problem}: lower train_size/valid_size/test_size/test_seen_size or set "
                            f"COMPRESSOR_CACHE to a larger disk")

    return check


def commands_labels() -> dict[str, list[str]]:
    """The label values of the commands corpus: its intents, then its slots (action, object, location)."""
    values = grammars.slot_values()
    return {"intent": sorted(grammars.intent_name(i) for i in grammars.INTENTS), **values}


def build_commands(args: CommandsArgs, *, cache_dir: Path | None = None, seed: int = 0) -> SpeechDataModule:
    """Synthetic Fluent-Speech-Commands-like SLU corpus (intents + slots + transcripts)."""
    cache = cache_path(cache_dir)
    return _synthetic(_settings("commands", args, setting=args.setting), args, cache, seed, commands_labels())


def commands_info(args: CommandsArgs) -> dict[str, Any]:
    """The SLU corpus's labels (intents, and the values of its slots) before it is built."""
    intents = commands_labels()["intent"]
    return speech_info(args, "en", splits=list(SYNTHETIC_SPLITS), num_classes=len(intents), labels=intents,
                       slot_labels=grammars.slot_values())


def build_read_speech(args: ReadSpeechArgs, *, cache_dir: Path | None = None, seed: int = 0
                      ) -> SpeechDataModule:
    """Synthetic read speech (en/de/es/ru): a controlled grammar (small) or thousands of words (large)."""
    settings = _settings("read_speech", args, args.language, setting=args.setting)
    return _synthetic(settings, args, cache_path(cache_dir), seed)


def read_speech_info(args: ReadSpeechArgs) -> dict[str, Any]:
    return speech_info(args, args.language, splits=list(SYNTHETIC_SPLITS))


def build_shifted(args: ShiftedArgs, *, cache_dir: Path | None = None, seed: int = 0) -> SpeechDataModule:
    """Shifted English read speech: accents, a finance domain, or odd voice variants."""
    return _synthetic(_settings("shifted", args, "en", args.condition), args, cache_path(cache_dir), seed)


def shifted_info(args: ShiftedArgs) -> dict[str, Any]:
    return speech_info(args, "en", splits=list(SYNTHETIC_SPLITS))


#: name -> validation-time check (see ``registry.add(..., check=fn)``)
CHECKS: dict[str, Any] = {
    "commands": synthetic_check("commands"),
    "read_speech": synthetic_check("read_speech"),
    "shifted": synthetic_check("shifted", "en"),
}

#: name -> (factory, args, info)
DATASETS: dict[str, tuple[Any, type[SpeechArgs], Any]] = {
    "commands": (build_commands, CommandsArgs, commands_info),
    "read_speech": (build_read_speech, ReadSpeechArgs, read_speech_info),
    "shifted": (build_shifted, ShiftedArgs, shifted_info),
}
