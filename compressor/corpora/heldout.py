"""``heldout_speech``: the test sentences of a read-speech corpus spoken by synthesisers other than espeak-ng.

Every training corpus is espeak-ng speech, so a model's error on ``test`` (unseen espeak voices) says nothing
about speech made another way. This corpus takes the ``test`` split of a ``read_speech`` corpus (``base``:
its language, setting, sizes and seed), and has each synthesiser of :mod:`compressor.corpora.other_synths`
speak every one of its sentences, with the synthesiser's speakers in turn; with ``recording: base`` each
utterance gets the recording condition (noise, reverberation) of the base utterance it repeats. Its error
rates therefore compare with the base corpus's ``test`` split sentence for sentence.

Splits: ``test`` (every synthesiser) and ``test_<synthesizer>`` (one each). Built once into the cache like
the other corpora (:func:`compressor.corpora.build.build_corpus`: atomic build, checksummed ``DONE``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import soundfile as sf
import torch
from pydantic import Field, field_validator, model_validator

from compressor.core.registry import Args
from compressor.corpora.build import CHUNK, SAMPLE_RATE, _pool_map, _recording, build_corpus
from compressor.corpora.corpus import CorpusSettings, plan, split_speakers
from compressor.corpora.datasets import ReadSpeechArgs, lhotse_cuts
from compressor.corpora.other_synths import SYNTHESIZERS, OtherSynth, OtherVoice, require
from compressor.data.audio import resample
from compressor.data.datasets import cache_path
from compressor.data.formats import read_nemo_manifest
from compressor.data.speech import SpeechDataModule
from compressor.data.speech_args import SpeechArgs
from compressor.data.speech_build import build_eval_module, speech_info
from compressor.data.utterance import Utterance

KIND = "heldout_speech"
#: bump when what a held-out corpus holds for the same settings changes
RECIPE = 2  # 2: Pico's audio independent of the utterances before it


class BaseCorpusArgs(Args):
    """The ``read_speech`` corpus whose ``test`` sentences are spoken: its corpus arguments, with the same
    defaults (unset ones take ``read_speech``'s, for its ``setting``)."""

    language: Literal["en"] = Field(default="en", description="the held-out synthesisers speak English")
    setting: Literal["small", "large"] = "small"
    train_size: int | None = Field(default=None, ge=1)
    valid_size: int | None = Field(default=None, ge=1)
    test_size: int | None = Field(default=None, ge=1)
    test_seen_size: int | None = Field(default=None, ge=1)
    num_speakers: int | None = Field(default=None, ge=3)
    valid_speakers: int | None = Field(default=None, ge=1)
    test_speakers: int | None = Field(default=None, ge=1)
    seed: int = 0

    def read_speech(self) -> ReadSpeechArgs:
        return ReadSpeechArgs(**self.model_dump(exclude_none=True))


class HeldoutArgs(SpeechArgs):
    """The ``test`` sentences of a ``read_speech`` corpus spoken by non-espeak synthesisers (``pico``,
    ``hibari``; the ``heldout`` extra installs them)."""

    synthesizers: list[str] = Field(default_factory=lambda: list(SYNTHESIZERS), min_length=1,
                                    description=f"which synthesisers speak: {' | '.join(SYNTHESIZERS)}")
    voices: int | None = Field(default=None, ge=1, description="at most this many speakers per synthesiser "
                               "(default: all it has: pico 12, hibari 5)")
    base: BaseCorpusArgs = Field(default_factory=BaseCorpusArgs,
                                 description="the read_speech corpus whose test sentences are spoken")
    sentences: int | None = Field(default=None, ge=1, description="only the first this many test sentences")
    recording: Literal["base", "clean"] = Field(
        default="base", description="base: each utterance recorded as the base utterance it repeats (the large "
        "setting's noise and reverberation) | clean: no recording condition")
    workers: int = Field(default=2, ge=1, description="synthesis processes (does not change the audio)")

    @field_validator("synthesizers")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in SYNTHESIZERS]
        if unknown:
            raise ValueError(f"unknown synthesizer(s) {', '.join(unknown)}; available: {', '.join(SYNTHESIZERS)}")
        if len(set(names)) != len(names):
            raise ValueError("a synthesizer is named twice")
        return names

    @model_validator(mode="after")
    def _no_training_options(self) -> HeldoutArgs:
        given = [k for k in ("unlabelled", "subset", "hide_labels") if getattr(self, k) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: heldout_speech is an evaluation set, it has no training split")
        return self


def heldout_settings(args: HeldoutArgs) -> CorpusSettings:
    """The corpus's settings (its cache key): the base corpus's, the synthesisers and their installed
    versions (a :class:`UserError` names the extra to install when one is missing)."""
    versions = require(args.synthesizers)
    base = args.base.read_speech()
    return CorpusSettings(
        kind=KIND, language=base.language, setting=base.setting, train_size=base.train_size,
        valid_size=base.valid_size, test_size=base.test_size, test_seen_size=base.test_seen_size,
        num_speakers=base.num_speakers, valid_speakers=base.valid_speakers, test_speakers=base.test_speakers,
        seed=base.seed, extra={"recipe": RECIPE, "synthesizers": versions, "voices": args.voices,
                               "sentences": args.sentences, "recording": args.recording})


def base_settings(s: CorpusSettings) -> CorpusSettings:
    """The read-speech corpus a held-out corpus repeats."""
    return replace(s, kind="read_speech", extra={})


def _speak_chunk(job: tuple[str, list[tuple[dict[str, Any], str, int, str, str | None]]]) -> list[float]:
    """Speak one chunk in a fresh process and write it as 16 kHz FLAC; durations in s. Fixed chunks in fresh
    processes keep the audio identical for identical settings whatever the number of workers, as for
    espeak-ng's corpora, and keep the process-wide setting Pico needs (:class:`OtherSynth`) out of the caller."""
    torch.set_num_threads(1)  # forked child: never start a thread pool
    folder, items = job
    synth = OtherSynth()
    durations = []
    for voice, text, seed, uid, condition in items:
        audio, rate = synth.synthesize(text, OtherVoice(**voice), seed)
        wave = resample(torch.from_numpy(audio), rate, SAMPLE_RATE).clamp_(-1.0, 1.0).numpy()
        wave = _recording(wave, condition, seed)
        sf.write(str(Path(folder) / f"{uid}.flac"), wave, SAMPLE_RATE, subtype="PCM_16")
        durations.append(len(wave) / SAMPLE_RATE)
    return durations


def _fill(s: CorpusSettings, tmp: Path, workers: int) -> int:
    """Speak the base corpus's test sentences with every synthesiser into ``tmp`` (``build_corpus``'s fill)."""
    items = plan(base_settings(s))["test"][: s.extra["sentences"]]
    names = list(s.extra["synthesizers"])
    rows: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        voices = SYNTHESIZERS[name].voices[: s.extra["voices"]]
        rows[name] = []
        for i, item in enumerate(items):
            voice = voices[i % len(voices)]
            condition = item.get("condition") if s.extra["recording"] == "base" else None
            rows[name].append({"text": item["text"], "id": f"{name}-{i:06d}", "speaker": voice.speaker_id,
                               "synthesizer": name, "base_id": item["id"], "condition": condition or "clean",
                               "voice": asdict(voice), "seed": item["synth_seed"], "recorded": condition})
    everything = [r for name in names for r in rows[name]]
    jobs = [(str(tmp / "audio"), [(r["voice"], r["text"], r["seed"], r["id"], r["recorded"])
                                  for r in rows[name][i:i + CHUNK]])
            for name in names for i in range(0, len(rows[name]), CHUNK)]
    durations = iter(d for chunk in _pool_map(_speak_chunk, jobs, workers, f"synthesising held-out corpus "
                                              f"{s.dirname()}") for d in chunk)
    for r in everything:  # the jobs hold the rows in this order
        r["duration"] = round(next(durations), 3)
    keep = ("audio_filepath", "duration", "text", "id", "speaker", "synthesizer", "base_id", "condition")
    for split, entries in [("test", everything), *[(f"test_{name}", rows[name]) for name in names]]:
        with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for r in entries:
                row = {**r, "audio_filepath": f"audio/{r['id']}.flac"}
                f.write(json.dumps({k: row[k] for k in keep}, ensure_ascii=False) + "\n")
    (tmp / "settings.json").write_text(json.dumps(s.record(), indent=1), encoding="utf-8")
    return len(everything)


def splits_of(args: HeldoutArgs) -> list[str]:
    return ["test", *[f"test_{name}" for name in args.synthesizers]]


def build_heldout_speech(args: HeldoutArgs, *, cache_dir: Path | None = None, seed: int = 0) -> SpeechDataModule:
    """Evaluation only: a read_speech corpus's test sentences spoken by non-espeak synthesisers (Pico, Hibari).

    Splits ``test`` (all of them) and ``test_<synthesizer>``; no training split."""
    settings = heldout_settings(args)
    cache = cache_path(cache_dir)
    root = build_corpus(settings, cache, workers=args.workers, fill=_fill)
    splits: dict[str, list[Utterance]] = {}
    skips: list[dict[str, Any]] = []
    for split in splits_of(args):
        utts, bad = read_nemo_manifest(root / f"{split}.jsonl", split, strict=args.strict)
        splits[split], skips = utts, skips + bad
        lhotse_cuts(root, split, utts)
    return build_eval_module(splits, args, language=settings.language, cache_dir=cache, seed=seed, skipped=skips,
                             extra_info={"corpus_dir": str(root), "corpus": settings.dirname(),
                                         "synthesizers": settings.extra["synthesizers"]})


def heldout_info(args: HeldoutArgs) -> dict[str, Any]:
    return speech_info(args, args.base.language, splits=splits_of(args))


def heldout_check(args: HeldoutArgs) -> None:
    """Validation: the synthesisers are installed and the base corpus's speakers exist."""
    split_speakers(base_settings(heldout_settings(args)))
