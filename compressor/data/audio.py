"""Reading audio with ``soundfile``: mono, 16 kHz, float in [-1, 1], with bad files reported as
:class:`AudioError` (a path with NUL or control characters, missing, unreadable/corrupt, empty, truncated,
longer than the per-item limit by its header, NaN/inf or absurd samples)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SAMPLE_RATE = 16000
#: Longest audio item read, in seconds, judged from the file's header before any sample is decoded (the
#: speech datasets' ``max_item_seconds``): one item must not take the memory of a whole corpus.
MAX_ITEM_SECONDS = 600.0
#: Float samples beyond this magnitude are not audio (nominal full scale is 1).
MAX_AMPLITUDE = 100.0


class AudioError(Exception):
    """A file that cannot be used as training audio; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.Resample(orig, new)  # caches its sinc kernel


def resample(waveform: torch.Tensor, orig_sr: int, new_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """Band-limited resampling (torchaudio's sinc interpolation, ``torchaudio.functional.resample``)."""
    if orig_sr == new_sr:
        return waveform
    g = int(np.gcd(int(orig_sr), int(new_sr)))
    with torch.no_grad():
        return _resampler(int(orig_sr) // g, int(new_sr) // g)(waveform)


def _wav_shortfall(path: Path) -> int | None:
    """For a RIFF/WAVE file: bytes its ``data`` chunk header promises beyond the end of the file (libsndfile
    silently reads what is there, so truncation is checked here); ``None`` for other formats."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            size = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                if size in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                    return 0
                remaining = path.stat().st_size - f.tell()
                return max(0, size - remaining)
            f.seek(size + (size & 1), 1)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, *, min_samples: int = 400,
               offset: float = 0.0, duration: float | None = None,
               max_seconds: float = MAX_ITEM_SECONDS) -> torch.Tensor:
    """Read ``path`` as a mono float32 tensor ``(S,)`` at ``sample_rate``.

    Multi-channel audio is averaged to mono; other rates are resampled. Raises :class:`AudioError` when
    the path holds NUL or control characters, the file is missing, unreadable, shorter than ``min_samples``
    (one 25 ms frame at 16 kHz), longer than ``max_seconds`` by its header (checked before decoding), truncated
    (fewer frames than its header promises), or contains NaN/inf or samples beyond ``MAX_AMPLITUDE``.
    """
    text = str(path)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise AudioError("bad_path", f"audio path has NUL or control characters: {text!r}"[:300])
    path = Path(path)
    try:
        os.stat(path)
    except FileNotFoundError:
        raise AudioError("missing", f"audio file not found: {path}") from None
    except OSError as e:  # a symlink loop, a name too long, no permission on a parent folder
        raise AudioError("unreadable", f"audio file cannot be read ({e.strerror or e}): {path}") from None
    if not path.is_file():
        raise AudioError("unreadable", f"audio path is not a file: {path}")
    if not os.access(path, os.R_OK):
        raise AudioError("unreadable", f"audio file cannot be read (permission denied): {path}")
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            expected = f.frames
            read = expected if duration is None else min(expected, int(round(duration * sr)))
            if sr <= 0 or read / sr > max_seconds or read * f.channels > max_seconds * 2 * 192000:
                raise AudioError("too_long", f"audio longer than the {max_seconds:g} s limit by its header: "
                                             f"{path} ({expected / max(sr, 1):.1f} s, {f.channels} channels)")
            start = int(round(offset * sr))
            if start:
                f.seek(min(start, max(expected, 0)))
            n = -1 if duration is None else int(round(duration * sr))
            data = f.read(frames=n, dtype="float32", always_2d=True)
            if duration is None:
                expected = max(expected - start, 0)
            else:
                expected = min(n, max(expected - start, 0))
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise AudioError("corrupt", f"cannot decode audio {path}: {e}") from None
    except OSError as e:
        raise AudioError("unreadable", f"audio file cannot be read ({e.strerror or e}): {path}") from None
    if data.shape[0] == 0:
        raise AudioError("empty", f"audio file has no samples: {path}")
    shortfall = _wav_shortfall(path)
    if shortfall:
        raise AudioError("truncated", f"audio file truncated: {path} ({shortfall} bytes of samples missing)")
    if 0 < expected and data.shape[0] < expected:
        raise AudioError("truncated", f"audio file truncated: {path} ({data.shape[0]} of {expected} frames)")
    if not np.isfinite(data).all():
        raise AudioError("nan", f"audio file contains NaN or infinite samples: {path}")
    peak = float(np.abs(data).max())
    if peak > MAX_AMPLITUDE:
        raise AudioError("amplitude", f"audio samples of absurd amplitude (peak {peak:.3g}, full scale is 1): "
                                      f"{path}")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    wave = torch.from_numpy(np.ascontiguousarray(mono))
    wave = resample(wave, sr, sample_rate)
    if wave.numel() < min_samples:
        raise AudioError("empty", f"audio too short: {path} ({wave.numel()} samples at {sample_rate} Hz)")
    return wave
