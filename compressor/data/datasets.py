"""The dataset components a spec can name: synthetic ``commands``, ``read_speech``, ``shifted`` and the
real-format readers ``nemo_manifest``, ``fsc``, ``librispeech``, ``common_voice``.

Factories follow the registry contract ``factory(args, *, cache_dir, seed) -> DataModule``. Synthetic
corpora depend on their own ``seed`` argument (not the run's seed), so every spec naming the same corpus
settings shares one cached corpus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compressor.data import grammars
from compressor.data.corpora import CorpusSettings, build_corpus, corpus_dir, default_cache_dir, split_speakers
from compressor.data.formats import read_common_voice, read_fsc_csv, read_librispeech, read_nemo_manifest
from compressor.data.speech import SpeechArgs, SpeechDataModule, Utterance, build_speech_module, speech_info
from compressor.errors import UserError

Language = Literal["en", "de", "es", "ru"]
SPLITS = ("train", "valid", "test")


def _cache(cache_dir: Path | str | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


# ------------------------------------------------------------------------------------------------
# Synthetic corpora
# ------------------------------------------------------------------------------------------------


class SyntheticArgs(SpeechArgs):
    train_size: int = Field(default=2000, ge=1)
    valid_size: int = Field(default=250, ge=1)
    test_size: int = Field(default=250, ge=1)
    num_speakers: int = Field(default=36, ge=3, description="speakers in all (valid/test take 6 each)")
    seed: int = Field(default=0, description="corpus seed (sentences, speakers)")
    workers: int = Field(default=2, ge=1, description="synthesis processes (does not change the audio)")


class CommandsArgs(SyntheticArgs):
    """Fluent-Speech-Commands-like SLU corpus: 31 (action, object, location) intents, 248 phrasings."""

    train_size: int = Field(default=1200, ge=1)
    valid_size: int = Field(default=200, ge=1)
    test_size: int = Field(default=200, ge=1)


class ReadSpeechArgs(SyntheticArgs):
    """Read speech from a small controlled-vocabulary grammar, per language."""

    language: Language = "en"


class ShiftedArgs(SyntheticArgs):
    """Shifted English conditions for adaptation: ``accent`` (en-gb-scotland, en-029, en-us-nyc, ...),
    ``domain`` (finance vocabulary) or ``variant`` (odd voices: klatt, croak, whisper, ...)."""

    condition: Literal["accent", "domain", "variant"] = Field(
        default="accent", description="accent (6 English accents) | domain (finance) | variant (odd voices)"
    )
    train_size: int = Field(default=600, ge=1)
    valid_size: int = Field(default=150, ge=1)
    test_size: int = Field(default=150, ge=1)
    num_speakers: int = Field(default=30, ge=3)


def _settings(kind: str, args: SyntheticArgs, language: str = "en", condition: str = "clean"
              ) -> CorpusSettings:
    return CorpusSettings(kind=kind, language=language, condition=condition, train_size=args.train_size,
                          valid_size=args.valid_size, test_size=args.test_size,
                          num_speakers=args.num_speakers, seed=args.seed)


def _synthetic(settings: CorpusSettings, args: SyntheticArgs, cache_dir: Path, seed: int,
               label_values: dict[str, list[str]] | None = None) -> SpeechDataModule:
    root = build_corpus(settings, cache_dir, workers=args.workers)
    splits: dict[str, list[Utterance]] = {}
    skips: list[dict[str, Any]] = []
    for split in SPLITS:
        utts, bad = read_nemo_manifest(root / f"{split}.jsonl", split, strict=args.strict)
        splits[split], skips = utts, skips + bad
    return build_speech_module(splits, args, language=settings.language, cache_dir=cache_dir, seed=seed,
                               label_values=label_values, skipped=skips,
                               extra_info={"corpus_dir": str(root), "corpus": settings.dirname()})


#: Disk a synthetic utterance takes in the cache: ~28 KB of 16 kHz FLAC and ~39 KB of fbank features,
#: measured on the shipped commands and read_speech corpora.
BYTES_PER_UTTERANCE = 70_000


def synthetic_check(kind: str, language: str = "en", condition: str = "clean") -> Any:
    """The validation-time check of a synthetic corpus: its speakers exist, and it fits on the cache's disk."""
    def check(args: SyntheticArgs) -> None:
        from compressor.limits import check_fits, free_disk_bytes, human_bytes

        lang = getattr(args, "language", language)
        cond = getattr(args, "condition", condition)
        settings = _settings(kind, args, lang, cond)
        split_speakers(settings)  # raises when the corpus asks for more speakers than exist
        cache = default_cache_dir()
        if (corpus_dir(settings, cache) / "DONE").exists():
            return
        n = args.train_size + args.valid_size + args.test_size
        problem = check_fits(n * BYTES_PER_UTTERANCE, free_disk_bytes(cache),
                             f"synthesising {n:,} utterances (~{human_bytes(BYTES_PER_UTTERANCE)} each)",
                             f"the free space of the cache {cache}")
        if problem:
            raise UserError(f"{problem}: lower train_size/valid_size/test_size or set COMPRESSOR_CACHE to a larger "
                            f"disk")

    return check


def commands_labels() -> dict[str, list[str]]:
    values = grammars.slot_values()
    return {"intent": sorted(grammars.intent_name(i) for i in grammars.INTENTS), **values}


def build_commands(args: CommandsArgs, *, cache_dir: Path | None = None, seed: int = 0) -> SpeechDataModule:
    """Synthetic Fluent-Speech-Commands-like SLU corpus (intents + slots + transcripts)."""
    cache = _cache(cache_dir)
    return _synthetic(_settings("commands", args), args, cache, seed, commands_labels())


def commands_info(args: CommandsArgs) -> dict[str, Any]:
    labels = commands_labels()
    return speech_info(args, "en", num_classes=len(labels["intent"]), labels=labels["intent"],
                       slot_labels={k: labels[k] for k in ("action", "object", "location")})


def build_read_speech(args: ReadSpeechArgs, *, cache_dir: Path | None = None, seed: int = 0
                      ) -> SpeechDataModule:
    """Synthetic read speech (en/de/es/ru) from a controlled-vocabulary grammar."""
    return _synthetic(_settings("read_speech", args, args.language), args, _cache(cache_dir), seed)


def read_speech_info(args: ReadSpeechArgs) -> dict[str, Any]:
    return speech_info(args, args.language)


def build_shifted(args: ShiftedArgs, *, cache_dir: Path | None = None, seed: int = 0) -> SpeechDataModule:
    """Shifted English read speech: accents, a finance domain, or odd voice variants."""
    return _synthetic(_settings("shifted", args, "en", args.condition), args, _cache(cache_dir), seed)


def shifted_info(args: ShiftedArgs) -> dict[str, Any]:
    return speech_info(args, "en")


# ------------------------------------------------------------------------------------------------
# Real formats
# ------------------------------------------------------------------------------------------------


class RealArgs(SpeechArgs):
    train: str | list[str] = Field(description="training split: path (or list of paths)")
    valid: str | list[str] | None = Field(default=None, description="validation split path(s) (required)")
    test: str | list[str] | None = Field(default=None, description="test split path(s)")
    language: Language = Field(default="en", description="alphabet of the transcripts: en | de | es | ru")


class NemoManifestArgs(RealArgs):
    """NeMo-style JSONL manifests (audio_filepath, duration, text) per split."""


class FscArgs(RealArgs):
    """Fluent Speech Commands CSVs per split; ``audio_root`` defaults to the corpus root."""

    audio_root: str | None = None


class LibriSpeechArgs(RealArgs):
    """LibriSpeech directories per split (``<speaker>/<chapter>/*.trans.txt`` + FLAC)."""


class CommonVoiceArgs(RealArgs):
    """Common Voice TSVs per split (train.tsv, dev.tsv, test.tsv); clips in ``clips_dir``."""

    clips_dir: str | None = None


def _read_real(args: RealArgs, reader: Any, cache_dir: Path | None, seed: int,
               label_values: dict[str, list[str]] | None = None, **kw: Any) -> SpeechDataModule:
    splits: dict[str, list[Utterance]] = {}
    skips: list[dict[str, Any]] = []
    for split in SPLITS:
        paths = getattr(args, split)
        if paths is None:
            continue
        splits[split] = []
        for p in [paths] if isinstance(paths, str) else paths:
            utts, bad = reader(p, split, strict=args.strict, **kw)
            splits[split].extend(utts)
            skips.extend(bad)
    if "valid" not in splits:
        raise UserError("a dataset needs a 'valid' split (the engine evaluates on it)")
    return build_speech_module(splits, args, language=args.language, cache_dir=_cache(cache_dir), seed=seed,
                               label_values=label_values, skipped=skips)


def build_nemo_manifest(args: NemoManifestArgs, *, cache_dir: Path | None = None, seed: int = 0
                        ) -> SpeechDataModule:
    """NeMo JSONL manifests."""
    return _read_real(args, read_nemo_manifest, cache_dir, seed)


def build_fsc(args: FscArgs, *, cache_dir: Path | None = None, seed: int = 0) -> SpeechDataModule:
    """Fluent Speech Commands (CSV layout)."""
    return _read_real(args, read_fsc_csv, cache_dir, seed, audio_root=args.audio_root)


def build_librispeech(args: LibriSpeechArgs, *, cache_dir: Path | None = None, seed: int = 0
                      ) -> SpeechDataModule:
    """LibriSpeech directory layout."""
    return _read_real(args, read_librispeech, cache_dir, seed)


def build_common_voice(args: CommonVoiceArgs, *, cache_dir: Path | None = None, seed: int = 0
                       ) -> SpeechDataModule:
    """Common Voice TSV layout."""
    return _read_real(args, read_common_voice, cache_dir, seed, clips_dir=args.clips_dir)


def real_info(args: RealArgs) -> dict[str, Any]:
    return speech_info(args, args.language, splits=[s for s in SPLITS if getattr(args, s) is not None])


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
    "nemo_manifest": (build_nemo_manifest, NemoManifestArgs, real_info),
    "fsc": (build_fsc, FscArgs, real_info),
    "librispeech": (build_librispeech, LibriSpeechArgs, real_info),
    "common_voice": (build_common_voice, CommonVoiceArgs, real_info),
}
