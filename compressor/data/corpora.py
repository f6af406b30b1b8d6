"""Synthetic corpora: sentences x synthetic speakers -> FLAC files + NeMo-style JSONL manifests, on disk.

A corpus is a pure function of its settings (:class:`CorpusSettings`). It is built once into
``<cache_dir>/corpora/<kind>-<hash of settings>/`` and reused while its ``DONE`` marker exists, so a spec
asking for the same corpus twice (or two specs sharing one) synthesise it once.

Speakers are espeak voice x variant x speaking rate x pitch combinations; train/valid/test speakers are
disjoint. Synthesis runs in forked worker processes, each of which synthesises one fixed chunk of the
corpus from a freshly initialised espeak-ng: espeak-ng carries state from one utterance to the next (its
pitch "flutter" and noise generators), so fixed chunks in fresh processes keep the audio identical for
identical settings regardless of the number of workers (the processes fork from a fork server, never from
a process that may have synthesised before).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from compressor.data import grammars
from compressor.data.synth import Voice

SAMPLE_RATE = 16000
CHUNK = 64  # utterances per fresh synthesis process
VERSION = 1  # bump when the synthesis recipe changes

#: Variants ordered by intelligibility (STACK.md: m3 0% WER, f3 4%, f2/m5 21%, klatt/m1 ~70%).
CLEAN_VARIANTS = ("m3", "f3", "m2", "f2", "m5", "f4", "m4", "f1", "m6", "f5", "m7", "")
ODD_VARIANTS = ("klatt", "croak", "whisper", "m1", "klatt2", "klatt3")
ACCENTS = ("en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-rp", "en", "en-gb-x-gbclan")
RATES = (150, 175, 200)
PITCHES = (35, 50, 65)
ESPEAK_VOICE = {"en": "en-us", "de": "de", "es": "es", "ru": "ru"}


@dataclass
class CorpusSettings:
    """Everything that determines a synthetic corpus (and so its cache key)."""

    kind: str  # commands | read_speech | shifted
    language: str = "en"
    condition: str = "clean"  # shifted: accent | domain | variant
    train_size: int = 2000
    valid_size: int = 250
    test_size: int = 250
    num_speakers: int = 36
    valid_speakers: int = 6
    test_speakers: int = 6
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        blob = json.dumps({"v": VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def dirname(self) -> str:
        tag = self.kind if self.kind == "commands" else f"{self.kind}-{self.language}"
        if self.kind == "shifted":
            tag += f"-{self.condition}"
        return f"{tag}-{self.key()}"


def default_cache_dir() -> Path:
    """``$COMPRESSOR_CACHE`` or ``~/.cache/compressor``."""
    env = os.environ.get("COMPRESSOR_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/compressor").expanduser()


# ------------------------------------------------------------------------------------------------
# Speakers and sentences
# ------------------------------------------------------------------------------------------------


def speaker_pool(s: CorpusSettings) -> list[Voice]:
    """All candidate speakers of a corpus, in a fixed order."""
    if s.kind == "shifted" and s.condition == "accent":
        names, variants = ACCENTS, CLEAN_VARIANTS[:6]
    elif s.kind == "shifted" and s.condition == "variant":
        names, variants = ("en-us",), ODD_VARIANTS
    else:
        names, variants = (ESPEAK_VOICE[s.language],), CLEAN_VARIANTS
    return [Voice(n, v, rate=r, pitch=p) for n in names for v in variants for r in RATES for p in PITCHES]


def split_speakers(s: CorpusSettings) -> dict[str, list[Voice]]:
    """Speaker-disjoint train/valid/test speaker sets drawn from the pool by the seed."""
    pool = speaker_pool(s)
    rng = random.Random(f"speakers:{s.seed}")
    rng.shuffle(pool)
    n_valid, n_test = s.valid_speakers, s.test_speakers
    n_train = max(1, min(s.num_speakers, len(pool)) - n_valid - n_test)
    if n_train + n_valid + n_test > len(pool):
        from compressor.errors import UserError

        raise UserError(f"{s.kind}: asks for {n_train + n_valid + n_test} speakers, only {len(pool)} exist")
    return {"train": pool[:n_train], "valid": pool[n_train:n_train + n_valid],
            "test": pool[n_train + n_valid:n_train + n_valid + n_test]}


def _sentences(s: CorpusSettings, split: str, n: int, rng: random.Random) -> list[dict[str, Any]]:
    if s.kind == "commands":
        values = grammars.slot_values()
        out = []
        for _ in range(n):
            intent = rng.choice(grammars.INTENTS)
            text = rng.choice(grammars.phrasings(intent))
            out.append({"text": text, "intent": grammars.intent_name(intent), "action": intent[0],
                        "object": intent[1], "location": intent[2],
                        "slots": {k: intent[i] for i, k in enumerate(values)}})
        return out
    domain = "finance" if (s.kind == "shifted" and s.condition == "domain") else "general"
    grammar = grammars.read_speech_grammar(s.language, domain)
    return [{"text": grammar.sample(rng)} for _ in range(n)]


def plan(s: CorpusSettings) -> dict[str, list[dict[str, Any]]]:
    """The utterances of every split (text, speaker, labels) before any audio exists."""
    speakers = split_speakers(s)
    sizes = {"train": s.train_size, "valid": s.valid_size, "test": s.test_size}
    out: dict[str, list[dict[str, Any]]] = {}
    for split, n in sizes.items():
        rng = random.Random(f"{s.kind}:{s.language}:{s.condition}:{s.seed}:{split}")
        items = _sentences(s, split, n, rng)
        voices = speakers[split]
        for i, item in enumerate(items):
            voice = voices[rng.randrange(len(voices))]
            item.update(id=f"{split}-{i:06d}", speaker=voice.speaker_id, voice=asdict(voice),
                        synth_seed=rng.randrange(2**31))
        out[split] = items
    return out


# ------------------------------------------------------------------------------------------------
# Synthesis
# ------------------------------------------------------------------------------------------------


def _synth_chunk(job: tuple[str, list[tuple[str, dict[str, Any], int, str]]]) -> list[float]:
    """Synthesise, resample to 16 kHz and write one chunk as FLAC (in a fresh process); durations in s."""
    from compressor.data.synth import Espeak

    torch.set_num_threads(1)  # forked child: never start a thread pool
    folder, items = job
    engine = Espeak.get()
    durations = []
    for text, voice, seed, name in items:
        pcm = engine.synthesize(text, Voice(**voice), seed)
        wave = _to_16k(pcm, engine.sample_rate)
        sf.write(str(Path(folder) / name), wave, SAMPLE_RATE, subtype="PCM_16")
        durations.append(len(wave) / SAMPLE_RATE)
    return durations


def _synth_raw(job: list[tuple[str, dict[str, Any], int]]) -> list[np.ndarray]:
    from compressor.data.synth import synthesize

    return [synthesize(text, Voice(**voice), seed)[0] for text, voice, seed in job]


def _pool_map(fn: Any, jobs: list[Any], workers: int, desc: str | None = None) -> list[Any]:
    """Run ``fn`` over ``jobs``, each in a fresh process forked from a fork server that has never
    synthesised anything (a plain fork would inherit this process's espeak-ng state, if it has one).
    With ``desc``, progress counts the utterances of finished chunks (every job is a chunk of them)."""
    from compressor.progress import Progress

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["compressor.data.corpora"])
    sizes = [len(job[1]) if isinstance(job, tuple) else len(job) for job in jobs]
    with ctx.Pool(max(1, min(workers, len(jobs))), maxtasksperchild=1) as pool, \
            Progress(desc or "", total=sum(sizes), unit="utt", enabled=desc is not None) as progress:
        out = []
        for size, result in zip(sizes, pool.imap(fn, jobs, chunksize=1)):  # in order, as map
            out.append(result)
            progress.update(size)
        return out


def synthesize_items(items: list[dict[str, Any]], workers: int = 2) -> list[np.ndarray]:
    """int16 audio at 22.05 kHz for each item, deterministic (fixed chunks, fresh processes)."""
    jobs = [[(it["text"], it["voice"], it["synth_seed"]) for it in items[i:i + CHUNK]]
            for i in range(0, len(items), CHUNK)]
    return [a for chunk in _pool_map(_synth_raw, jobs, workers) for a in chunk] if jobs else []


def synthesize_to_files(items: list[dict[str, Any]], folder: Path, workers: int = 2, desc: str | None = None
                        ) -> list[float]:
    """Write ``<id>.flac`` (16 kHz) for each item into ``folder``; returns durations in seconds. ``desc``
    names the progress shown."""
    jobs = [(str(folder), [(it["text"], it["voice"], it["synth_seed"], f"{it['id']}.flac")
                           for it in items[i:i + CHUNK]]) for i in range(0, len(items), CHUNK)]
    return [d for chunk in _pool_map(_synth_chunk, jobs, workers, desc) for d in chunk] if jobs else []


def _to_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    from compressor.data.audio import resample

    wave = torch.from_numpy(audio.astype(np.float32) / 32768.0)
    wave = resample(wave, sr, SAMPLE_RATE)
    return wave.clamp_(-1.0, 1.0).numpy()


def corpus_dir(s: CorpusSettings, cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "corpora" / s.dirname()


def build_corpus(s: CorpusSettings, cache_dir: Path | None = None, *, workers: int = 2,
                 log: bool = False) -> Path:
    """Build (or reuse) the corpus; returns its directory holding ``<split>.jsonl`` and ``audio/``."""
    root = corpus_dir(s, cache_dir)
    if (root / "DONE").exists():
        return root
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "audio").mkdir(parents=True)
    t0 = time.time()
    planned = plan(s)
    everything = [item for items in planned.values() for item in items]  # one pool for all splits
    try:
        durations = iter(synthesize_to_files(everything, tmp / "audio", workers,
                                             desc=f"synthesising corpus {s.dirname()}"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = 0
    for split, items in planned.items():
        with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for item in items:
                entry = {"audio_filepath": f"audio/{item['id']}.flac", "duration": round(next(durations), 3),
                         **{k: v for k, v in item.items() if k not in ("voice", "synth_seed")}}
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        total += len(items)
    (tmp / "settings.json").write_text(json.dumps(asdict(s), indent=1), encoding="utf-8")
    (tmp / "DONE").write_text(f"{total} utterances in {time.time() - t0:.1f}s\n")
    if root.exists():  # another process finished first
        shutil.rmtree(tmp)
    else:
        tmp.rename(root)
    if log:
        print(f"built {root} ({total} utterances, {time.time() - t0:.1f}s)")
    return root
