"""Building synthetic corpora: sentences x synthetic speakers -> FLAC files + NeMo-style JSONL manifests, on disk.

A corpus is a pure function of its settings (:class:`CorpusSettings`). It is built once into
``<cache_dir>/corpora/<kind>-<hash of settings>/`` and reused while its ``DONE`` marker holds and proves the
corpus unchanged, so a spec asking for the same corpus twice (or two specs sharing one) synthesise it once.

**Integrity.** ``DONE`` records what produced the corpus (its settings and recipe version) and a SHA-256 of
every manifest and of ``settings.json``, and every audio file's size. Reusing a corpus checks them (the manifests
are hashed, the audio files only stat-ed: cheap); a missing or unreadable marker, an edited or shortened
manifest, a missing or resized audio file rebuilds the corpus, and one line says why. Synthesis writes into
``<dir>.tmp<pid>``: a failed or interrupted build removes it, and one left by a killed process is removed by
the next build of that corpus.

Synthesis runs in forked worker processes, each of which synthesises one fixed chunk of the corpus from a
freshly initialised espeak-ng: espeak-ng carries state from one utterance to the next (its pitch "flutter"
and noise generators), so fixed chunks in fresh processes keep the audio identical for identical settings
regardless of the number of workers (the processes fork from a fork server, never from a process that may
have synthesised before).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from compressor.core.interrupts import pid_alive
from compressor.core.progress import Progress, say
from compressor.corpora.corpus import CONDITIONS, FAR_FIELD, VERSION, CorpusSettings, plan
from compressor.corpora.synth import Espeak, Voice, synthesize
from compressor.data.audio import resample
from compressor.data.augment import AugmentArgs, augment
from compressor.data.cache import default_cache_dir
from compressor.data.featstore import file_sha256

SAMPLE_RATE = 16000
CHUNK = 64  # utterances per fresh synthesis process


# ------------------------------------------------------------------------------------------------
# Synthesis
# ------------------------------------------------------------------------------------------------


def _recording(wave: np.ndarray, condition: str | None, seed: int) -> np.ndarray:
    """Apply a recording condition (noise, reverberation) with the data layer's augmentation."""
    args = FAR_FIELD[1] if condition == FAR_FIELD[0] else next((a for name, _, a in CONDITIONS if name == condition),
                                                                None)
    if not args:
        return wave
    out = augment(torch.from_numpy(wave), AugmentArgs(**args), seed=seed, sample_rate=SAMPLE_RATE)
    return out.clamp_(-1.0, 1.0).numpy()


def _synth_chunk(job: tuple[str, list[tuple[str, dict[str, Any], int, str, str | None]]]) -> list[float]:
    """Synthesise, resample to 16 kHz, apply the recording condition and write one chunk as FLAC (in a fresh
    process); durations in s."""
    torch.set_num_threads(1)  # forked child: never start a thread pool
    folder, items = job
    engine = Espeak.get()
    durations = []
    for text, voice, seed, name, condition in items:
        pcm = engine.synthesize(text, Voice(**voice), seed)
        wave = _recording(_to_16k(pcm, engine.sample_rate), condition, seed)
        sf.write(str(Path(folder) / name), wave, SAMPLE_RATE, subtype="PCM_16")
        durations.append(len(wave) / SAMPLE_RATE)
    return durations


def _synth_raw(job: list[tuple[str, dict[str, Any], int]]) -> list[np.ndarray]:
    return [synthesize(text, Voice(**voice), seed)[0] for text, voice, seed in job]


def _pool_map(fn: Any, jobs: list[Any], workers: int, desc: str | None = None) -> list[Any]:
    """Run ``fn`` over ``jobs``, each in a fresh process forked from a fork server that has never
    synthesised anything (a plain fork would inherit this process's espeak-ng state, if it has one).
    With ``desc``, progress counts the utterances of finished chunks (every job is a chunk of them)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["compressor.corpora.build", "compressor.data.augment", "torchaudio.functional"])
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
    jobs = [(str(folder), [(it["text"], it["voice"], it["synth_seed"], f"{it['id']}.flac", it.get("condition"))
                           for it in items[i:i + CHUNK]]) for i in range(0, len(items), CHUNK)]
    return [d for chunk in _pool_map(_synth_chunk, jobs, workers, desc) for d in chunk] if jobs else []


def _to_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    wave = torch.from_numpy(audio.astype(np.float32) / 32768.0)
    wave = resample(wave, sr, SAMPLE_RATE)
    return wave.clamp_(-1.0, 1.0).numpy()


def corpus_dir(s: CorpusSettings, cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "corpora" / s.dirname()


def _marker(root: Path, s: CorpusSettings, total: int, seconds: float) -> dict[str, Any]:
    """What ``DONE`` holds: the producer, every manifest's checksum, every audio file's size."""
    audio = root / "audio"
    return {"utterances": total, "seconds": round(seconds, 1), "producer": {"version": VERSION, **s.record()},
            "sha256": {p.name: file_sha256(p) for p in sorted(root.glob("*.jsonl")) + [root / "settings.json"]},
            "audio_bytes": {p.name: p.stat().st_size for p in sorted(audio.iterdir())} if audio.is_dir() else {}}


def verify_corpus(root: Path, s: CorpusSettings) -> str | None:
    """Why the corpus at ``root`` cannot be reused (missing marker, changed manifest or audio), or None."""
    try:
        done = json.loads((root / "DONE").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "its DONE marker is missing"
    except (OSError, ValueError):
        return "its DONE marker is unreadable"
    if not isinstance(done, dict) or not isinstance(done.get("sha256"), dict) or not isinstance(
            done.get("audio_bytes"), dict):
        return "its DONE marker holds no checksums"
    if done.get("producer") != json.loads(json.dumps({"version": VERSION, **s.record()})):
        return "its DONE marker names other settings"
    for name, digest in done["sha256"].items():
        path = root / str(name)
        try:
            if file_sha256(path) != digest:
                return f"{path} was changed since it was built"
        except OSError:
            return f"{path} is missing"
    manifests = {p.name for p in root.glob("*.jsonl")}
    if not manifests <= set(done["sha256"]):
        return f"{root} holds manifests the marker does not list"
    for name, size in done["audio_bytes"].items():
        path = root / "audio" / str(name)
        try:
            if path.stat().st_size != size:
                return f"{path} was changed since it was built"
        except OSError:
            return f"{path} is missing"
    return None


def _old_marker(root: Path) -> bool:
    """A ``DONE`` marker as versions before checksums wrote it (one line of text)."""
    try:
        return (root / "DONE").read_text(encoding="utf-8").split(" ", 1)[1].startswith("utterances in ")
    except (OSError, ValueError, IndexError):
        return False


def clean_stale_builds(root: Path) -> list[Path]:
    """Remove the ``<corpus>.tmp<pid>`` folders beside ``root`` of builds whose process is gone."""

    removed = []
    for p in root.parent.glob("*.tmp*"):
        pid = p.name.rsplit(".tmp", 1)[1].removesuffix("-old")
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def build_corpus(s: CorpusSettings, cache_dir: Path | None = None, *, workers: int = 2,
                 log: bool = False, fill: Callable[[CorpusSettings, Path, int], int] | None = None) -> Path:
    """Build (or reuse, once verified: see :func:`verify_corpus`) the corpus; returns its directory holding
    ``<split>.jsonl`` and ``audio/``. ``fill(settings, folder, workers)`` writes a corpus of another kind
    into the build folder (its manifests, ``audio/`` and ``settings.json``) and returns its utterance count;
    by default espeak-ng speaks the corpus's plan."""
    root = corpus_dir(s, cache_dir)
    if root.parent.is_dir():
        clean_stale_builds(root)
    if root.exists():
        if _old_marker(root):  # built before markers held checksums: record them now, once
            (root / "DONE").write_text(json.dumps(_marker(root, s, -1, 0.0)), encoding="utf-8")
            say(f"corpus {root}: built by an older version: checksums recorded in its DONE marker")
        problem = verify_corpus(root, s)
        if problem is None:
            return root
        say(f"corpus {root}: {problem}: rebuilding it")
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    t0 = time.time()
    try:
        (tmp / "audio").mkdir(parents=True)
        total = (fill or _synthesize_into)(s, tmp, workers)
        (tmp / "DONE").write_text(json.dumps(_marker(tmp, s, total, time.time() - t0)), encoding="utf-8")
        if root.exists() and verify_corpus(root, s) is None:  # another process finished first
            shutil.rmtree(tmp)
        else:
            _swap(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if log:
        print(f"built {root} ({total} utterances, {time.time() - t0:.1f}s)")
    return root


def _synthesize_into(s: CorpusSettings, tmp: Path, workers: int) -> int:
    """Synthesise the corpus's audio and write its manifests and settings into ``tmp``; the utterance count."""
    planned = plan(s)
    everything = [item for items in planned.values() for item in items]  # one pool for all splits
    durations = iter(synthesize_to_files(everything, tmp / "audio", workers,
                                         desc=f"synthesising corpus {s.dirname()}"))
    total = 0
    for split, items in planned.items():
        with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for item in items:
                entry = {"audio_filepath": f"audio/{item['id']}.flac", "duration": round(next(durations), 3),
                         **{k: v for k, v in item.items() if k not in ("voice", "synth_seed")}}
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        total += len(items)
    (tmp / "settings.json").write_text(json.dumps(s.record(), indent=1), encoding="utf-8")
    return total


def _swap(tmp: Path, root: Path) -> None:
    """Move the built ``tmp`` to ``root``; a damaged ``root`` is moved aside first and removed after."""
    old = root.with_name(root.name + f".tmp{os.getpid()}-old")
    if root.exists():
        root.rename(old)
    tmp.rename(root)
    shutil.rmtree(old, ignore_errors=True)
