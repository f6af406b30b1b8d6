"""The dataset components a spec can name: synthetic ``commands``, ``read_speech``, ``shifted`` and the
real-format readers ``nemo_manifest``, ``fsc``, ``librispeech``, ``common_voice``.

Factories follow the registry contract ``factory(args, *, cache_dir, seed) -> DataModule``. Synthetic
corpora depend on their own ``seed`` argument (not the run's seed), so every spec naming the same corpus
settings shares one cached corpus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from compressor.data import grammars
from compressor.data.corpora import SPLITS as SYNTHETIC_SPLITS
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
                  "num_speakers": 120, "valid_speakers": 12, "test_speakers": 16}


class ReadSpeechArgs(SyntheticArgs):
    """Read speech per language: ``setting: small`` is a controlled grammar of tens of words (tests, quick
    runs); ``setting: large`` has thousands of words, more speakers, noisy and reverberant recordings and
    evaluation sentences never seen in training."""

    language: Language = "en"
    setting: Literal["small", "large"] = Field(
        default="small", description="small: controlled grammar | large: thousands of words, noise, reverb"
    )

    @model_validator(mode="after")
    def _large_defaults(self) -> ReadSpeechArgs:
        if self.setting == "large":
            for key, value in LARGE_DEFAULTS.items():
                if key not in self.model_fields_set:
                    object.__setattr__(self, key, value)
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
    return CorpusSettings(kind=kind, language=language, condition=condition, setting=setting,
                          train_size=args.train_size, valid_size=args.valid_size, test_size=args.test_size,
                          test_seen_size=args.test_seen_size, num_speakers=args.num_speakers,
                          valid_speakers=args.valid_speakers, test_speakers=args.test_speakers, seed=args.seed)


def _synthetic(settings: CorpusSettings, args: SyntheticArgs, cache_dir: Path, seed: int,
               label_values: dict[str, list[str]] | None = None) -> SpeechDataModule:
    root = build_corpus(settings, cache_dir, workers=args.workers)
    splits: dict[str, list[Utterance]] = {}
    skips: list[dict[str, Any]] = []
    for split in SYNTHETIC_SPLITS:
        utts, bad = read_nemo_manifest(root / f"{split}.jsonl", split, strict=args.strict)
        splits[split], skips = utts, skips + bad
    return build_speech_module(splits, args, language=settings.language, cache_dir=cache_dir, seed=seed,
                               label_values=label_values, skipped=skips,
                               extra_info={"corpus_dir": str(root), "corpus": settings.dirname()})


#: Disk a synthetic utterance takes in the cache: ~28 KB of 16 kHz FLAC and ~39 KB of fbank features,
#: measured on the shipped commands and read_speech corpora; the large read-speech setting's utterances are
#: twice as long and noisy (FLAC compresses them less): ~55 KB + ~80 KB measured.
BYTES_PER_UTTERANCE = 70_000
BYTES_PER_LARGE_UTTERANCE = 140_000


def synthetic_check(kind: str, language: str = "en", condition: str = "clean") -> Any:
    """The validation-time check of a synthetic corpus: its speakers exist, and it fits on the cache's disk."""
    def check(args: SyntheticArgs) -> None:
        from compressor.limits import check_fits, free_disk_bytes, human_bytes

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
    values = grammars.slot_values()
    return {"intent": sorted(grammars.intent_name(i) for i in grammars.INTENTS), **values}


def build_commands(args: CommandsArgs, *, cache_dir: Path | None = None, seed: int = 0) -> SpeechDataModule:
    """Synthetic Fluent-Speech-Commands-like SLU corpus (intents + slots + transcripts)."""
    cache = _cache(cache_dir)
    return _synthetic(_settings("commands", args, setting=args.setting), args, cache, seed, commands_labels())


def commands_info(args: CommandsArgs) -> dict[str, Any]:
    labels = commands_labels()
    return speech_info(args, "en", splits=list(SYNTHETIC_SPLITS), num_classes=len(labels["intent"]),
                       labels=labels["intent"], slot_labels={k: labels[k] for k in ("action", "object", "location")})


def build_read_speech(args: ReadSpeechArgs, *, cache_dir: Path | None = None, seed: int = 0
                      ) -> SpeechDataModule:
    """Synthetic read speech (en/de/es/ru): a controlled grammar (small) or thousands of words (large)."""
    settings = _settings("read_speech", args, args.language, setting=args.setting)
    return _synthetic(settings, args, _cache(cache_dir), seed)


def read_speech_info(args: ReadSpeechArgs) -> dict[str, Any]:
    return speech_info(args, args.language, splits=list(SYNTHETIC_SPLITS))


def build_shifted(args: ShiftedArgs, *, cache_dir: Path | None = None, seed: int = 0) -> SpeechDataModule:
    """Shifted English read speech: accents, a finance domain, or odd voice variants."""
    return _synthetic(_settings("shifted", args, "en", args.condition), args, _cache(cache_dir), seed)


def shifted_info(args: ShiftedArgs) -> dict[str, Any]:
    return speech_info(args, "en", splits=list(SYNTHETIC_SPLITS))


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
