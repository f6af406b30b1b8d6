"""fbank features of utterance records, computed once and cached on disk (see :mod:`compressor.data.featstore`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from compressor.core.progress import Progress
from compressor.data.audio import MAX_ITEM_SECONDS, SAMPLE_RATE, AudioError, load_audio
from compressor.data.featstore import FeatureStore, clean_stale, load_store, write_store
from compressor.data.features import fbank
from compressor.data.utterance import Utterance

FEATURE_CACHE_VERSION = 2


def _feature_cache_key(utts: list[Utterance], frontend: str, max_seconds: float = MAX_ITEM_SECONDS) -> str:
    limit = "" if max_seconds == MAX_ITEM_SECONDS else f":max{max_seconds}"
    h = hashlib.sha1(f"v{FEATURE_CACHE_VERSION}:{frontend}{limit}".encode())
    for u in utts:
        try:
            st = u.audio.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except (OSError, ValueError):  # ValueError: a NUL in the path, reported as a bad item later
            stamp = "missing"
        try:
            where = u.audio.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop: the file is reported unreadable later
            where = Path(os.path.abspath(u.audio))
        h.update(f"{where}|{stamp}|{u.offset}|{u.duration if u.offset else ''}\n".encode())
    return h.hexdigest()[:16]


def extract_features(
    utts: list[Utterance], frontend: str, cache_dir: Path | None, desc: str | None = None,
    max_seconds: float = MAX_ITEM_SECONDS,
) -> tuple[FeatureStore, list[tuple[str, str] | None]]:
    """fbank features of every utterance, streamed to a memory-mapped cache file under ``cache_dir``
    (kept in memory without one); a bad file (see :func:`load_audio`, ``max_seconds`` its length limit) gets
    zero frames and its ``(reason, message)``. ``desc`` names the progress shown while they are computed (not
    when they come from the cache)."""
    data = index = producer = None
    if cache_dir is not None:
        key = _feature_cache_key(utts, frontend, max_seconds)
        producer = {"frontend": frontend, "key": key}
        folder = Path(cache_dir) / "features"
        folder.mkdir(parents=True, exist_ok=True)
        data, index = folder / f"{key}.f32", folder / f"{key}.json"
        clean_stale(folder)
        cached = load_store(data, index, len(utts), producer=producer)
        if cached is not None:
            return cached

    progress = Progress(desc or "", total=len(utts), unit="utt", enabled=desc is not None and len(utts) > 0)

    def compute(u: Utterance) -> torch.Tensor:
        try:
            wave = load_audio(u.audio, offset=u.offset, duration=u.duration if u.offset else None,
                              max_seconds=max_seconds)
            return fbank(wave, SAMPLE_RATE, frontend)  # type: ignore[arg-type]
        finally:
            progress.update()

    def is_error(e: BaseException) -> tuple[str, str] | None:
        return (e.reason, str(e)) if isinstance(e, AudioError) else None

    with progress:
        return write_store(utts, compute, data, index, is_error, producer=producer)

