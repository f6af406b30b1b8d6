"""The real-format dataset components a spec can name: ``nemo_manifest``, ``fsc``, ``librispeech``,
``common_voice`` (the synthetic corpora are :mod:`compressor.corpora.datasets`).

Factories follow the registry contract ``factory(args, *, cache_dir, seed) -> DataModule``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compressor.core.errors import UserError
from compressor.data.cache import default_cache_dir
from compressor.data.formats import read_common_voice, read_fsc_csv, read_librispeech, read_nemo_manifest
from compressor.data.speech import SpeechDataModule
from compressor.data.speech_args import SpeechArgs
from compressor.data.speech_build import build_speech_module, speech_info
from compressor.data.utterance import Utterance

Language = Literal["en", "de", "es", "ru"]
SPLITS = ("train", "valid", "test")


def cache_path(cache_dir: Path | str | None) -> Path:
    """``cache_dir`` (``~`` expanded), or the default cache."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


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
    return build_speech_module(splits, args, language=args.language, cache_dir=cache_path(cache_dir), seed=seed,
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


#: name -> (factory, args, info)
DATASETS: dict[str, tuple[Any, type[SpeechArgs], Any]] = {
    "nemo_manifest": (build_nemo_manifest, NemoManifestArgs, real_info),
    "fsc": (build_fsc, FscArgs, real_info),
    "librispeech": (build_librispeech, LibriSpeechArgs, real_info),
    "common_voice": (build_common_voice, CommonVoiceArgs, real_info),
}
