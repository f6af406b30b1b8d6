"""The real-format dataset components a spec can name: ``lhotse`` (users' lhotse manifests, or a lhotse recipe run
on their corpus folder), ``librispeech`` (through lhotse's recipe), ``nemo_manifest``, ``fsc``, ``common_voice``
(the synthetic corpora are :mod:`compressor.corpora.datasets`).

Factories follow the registry contract ``factory(args, *, cache_dir, seed) -> DataModule``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from compressor.core.errors import UserError
from compressor.core.registry import Args
from compressor.data.cache import default_cache_dir
from compressor.data.formats import read_common_voice, read_fsc_csv, read_nemo_manifest
from compressor.data.lhotse_io import load_cuts, utterances
from compressor.data.recipes import prepare
from compressor.data.speech import SpeechDataModule
from compressor.data.speech_args import SAMPLER_HELP, Sampler, SpeechArgs
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
    """LibriSpeech directories per split (``<part>/<speaker>/<chapter>/*.trans.txt`` + FLAC), read by lhotse's
    ``librispeech`` recipe (its manifests cached under ``<cache>/lhotse/``)."""


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
    """LibriSpeech directory layout, through lhotse's ``librispeech`` recipe (one part per split folder)."""
    cache = cache_path(cache_dir)

    def read(path: str, split: str, *, strict: bool) -> tuple[list[Utterance], list[dict[str, Any]]]:
        part = Path(path).expanduser()
        if not part.is_dir():
            raise UserError(f"LibriSpeech directory not found: {part}")
        cuts = prepare("librispeech", part.parent, cache, dataset_parts=[part.name])[part.name]
        return utterances(cuts, split, str(part))

    return _read_real(args, read, cache_dir, seed)


def build_common_voice(args: CommonVoiceArgs, *, cache_dir: Path | None = None, seed: int = 0
                       ) -> SpeechDataModule:
    """Common Voice TSV layout."""
    return _read_real(args, read_common_voice, cache_dir, seed, clips_dir=args.clips_dir)


Splits = dict[Literal["train", "valid", "test"], str | list[str]]


class RecipeArgs(Args):
    """A lhotse recipe run on a corpus folder the user has: ``parts`` maps each split to the recipe's part
    name(s) (``{train: train-clean-100, valid: dev-clean}``); ``args`` go to ``lhotse.recipes.prepare_<name>``."""

    name: str = Field(min_length=1, description="the recipe: librispeech, slu, commonvoice, ... (lhotse.recipes)")
    corpus_dir: str = Field(min_length=1, description="the corpus folder the recipe reads")
    parts: Splits = Field(description="split -> the recipe's part name(s)")
    args: dict[str, Any] = Field(default_factory=dict, description="more keyword arguments of the recipe")


class LhotseArgs(SpeechArgs):
    """lhotse manifests per split: ``cuts`` (CutSet files), or ``recordings`` + ``supervisions``, or a
    ``recipe`` run on a corpus folder. Supervisions carry transcripts and speakers; SLU labels sit in their
    ``custom`` field (``intent``, ``slots``, or the ``slu`` recipe's ``frames``)."""

    sampler: Sampler = Field(default="lhotse", description=SAMPLER_HELP)

    cuts: Splits | None = Field(default=None, description="split -> CutSet manifest path(s) (.jsonl.gz)")
    recordings: Splits | None = Field(default=None, description="split -> RecordingSet manifest path(s)")
    supervisions: Splits | None = Field(default=None, description="split -> SupervisionSet manifest path(s)")
    recipe: RecipeArgs | None = Field(default=None, description="{name, corpus_dir, parts, args}: a lhotse recipe")
    language: Language = Field(default="en", description="alphabet of the transcripts: en | de | es | ru")

    @model_validator(mode="after")
    def _one_source(self) -> LhotseArgs:
        given = [k for k in ("cuts", "recordings", "recipe") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'cuts', 'recordings' (with 'supervisions') or 'recipe'")
        if (self.recordings is None) != (self.supervisions is None):
            raise ValueError("'recordings' and 'supervisions' go together")
        if self.recordings is not None and self.supervisions is not None and set(self.recordings) != set(
                self.supervisions):
            raise ValueError("'recordings' and 'supervisions' must name the same splits")
        if "valid" not in self.splits():
            raise ValueError("a dataset needs a 'valid' split (the engine evaluates on it)")
        return self

    def splits(self, key: str | None = None) -> dict[str, list[str]]:
        """split -> the manifests (or recipe parts) it reads; with ``key``, that field's manifests."""
        if key is not None:
            given = getattr(self, key) or {}
        else:
            given = self.recipe.parts if self.recipe is not None else (self.cuts or self.recordings or {})
        return {s: [v] if isinstance(v, str) else list(v) for s, v in given.items()}


def build_lhotse(args: LhotseArgs, *, cache_dir: Path | None = None, seed: int = 0) -> SpeechDataModule:
    """lhotse manifests (or a lhotse recipe's) as a speech data module."""
    cache = cache_path(cache_dir)
    prepared = (prepare(args.recipe.name, args.recipe.corpus_dir, cache, **args.recipe.args)
                if args.recipe is not None else None)
    splits: dict[str, list[Utterance]] = {}
    skips: list[dict[str, Any]] = []
    for split, items in args.splits().items():
        splits[split] = []
        for n, item in enumerate(items):
            if prepared is not None:
                if item not in prepared:
                    raise UserError(f"data.recipe.parts.{split}: the '{args.recipe.name}' recipe has no part "  # type: ignore[union-attr]
                                    f"'{item}' (it gave {', '.join(sorted(prepared)) or 'none'})")
                cuts, where = prepared[item], f"{args.recipe.name}:{item}"  # type: ignore[union-attr]
            elif args.cuts is not None:
                cuts, where = load_cuts(cuts=item), item
            else:
                sups = args.splits("supervisions")[split][n]
                cuts, where = load_cuts(recordings=item, supervisions=sups), sups
            utts, bad = utterances(cuts, split, where)
            if args.strict and bad:
                raise UserError(f"{bad[0]['source']}: {bad[0]['message']}")
            splits[split].extend(utts)
            skips.extend(bad)
    return build_speech_module(splits, args, language=args.language, cache_dir=cache, seed=seed, skipped=skips)


def lhotse_info(args: LhotseArgs) -> dict[str, Any]:
    return speech_info(args, args.language, splits=[s for s in SPLITS if s in args.splits()])


def real_info(args: RealArgs) -> dict[str, Any]:
    return speech_info(args, args.language, splits=[s for s in SPLITS if getattr(args, s) is not None])


#: name -> (factory, args, info)
DATASETS: dict[str, tuple[Any, type[SpeechArgs], Any]] = {
    "lhotse": (build_lhotse, LhotseArgs, lhotse_info),
    "nemo_manifest": (build_nemo_manifest, NemoManifestArgs, real_info),
    "fsc": (build_fsc, FscArgs, real_info),
    "librispeech": (build_librispeech, LibriSpeechArgs, real_info),
    "common_voice": (build_common_voice, CommonVoiceArgs, real_info),
}
