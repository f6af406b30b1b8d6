"""80-dim log-mel filterbank features, computed the way sherpa-onnx's C++ front end computes them.

sherpa-onnx feeds float samples in [-1, 1] (``normalize_samples=True``; no scaling by 32768) to
kaldi-native-fbank with ``dither=0``, ``snip_edges=False``, 25 ms Povey-windowed frames every 10 ms,
pre-emphasis 0.97, a 512-point FFT, power spectrum, ``log(max(energy, FLT_EPSILON))``. Two of its model
families differ in the mel filterbank (see sherpa-onnx ``offline-recognizer-transducer-nemo-impl.h`` and
``features.h``):

* ``frontend="nemo"`` — NeMo-style transducers (``model_type="nemo_transducer"``): blank is the **last**
  token, the project's convention. Librosa (Slaney) mel filters with Slaney
  normalisation over 0..7600 Hz, no DC-offset removal.
* ``frontend="nemo_ctc"`` — sherpa-onnx's NeMo CTC path: as ``nemo`` but a (periodic) Hann window and
  filters up to 8000 Hz. ``nemo_transducer`` is an alias of ``nemo``.
* ``frontend="nemo_online"`` — what sherpa-onnx's *online* (streaming) NeMo transducer recognizer computes
  (``online-recognizer-transducer-nemo-impl.h``): the same settings as ``nemo_ctc``. Train a model meant for
  streaming on this one.
* ``frontend="kaldi"`` — icefall-style models (``model_type="transducer"``, blank id 0): Kaldi (HTK-mel)
  filters over 20..7600 Hz with DC-offset removal; identical to ``torchaudio.compliance.kaldi.fbank`` with
  those options.

:func:`fbank` is the one function every recipe and the exporter use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

import torch

Frontend = Literal["nemo", "nemo_transducer", "nemo_ctc", "nemo_online", "kaldi"]
FRONTENDS: tuple[str, ...] = ("nemo", "nemo_transducer", "nemo_ctc", "nemo_online", "kaldi")
#: front end -> (mel filters, window, low Hz, high Hz (<= 0: relative to Nyquist), remove DC offset)
_PRESETS: dict[str, tuple[str, str, float, float, bool]] = {
    "nemo": ("librosa", "povey", 0.0, -400.0, False),
    "nemo_transducer": ("librosa", "povey", 0.0, -400.0, False),
    "nemo_ctc": ("librosa", "hann", 0.0, 0.0, False),
    "nemo_online": ("librosa", "hann", 0.0, 0.0, False),
    "kaldi": ("kaldi", "povey", 20.0, -400.0, True),
}

SAMPLE_RATE = 16000
NUM_BINS = 80
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms
N_FFT = 512
PREEMPH = 0.97
_EPS = torch.finfo(torch.float32).eps


def num_frames(num_samples: int) -> int:
    """Frames produced for ``num_samples`` samples (kaldi ``snip_edges=False``)."""
    return (num_samples + FRAME_SHIFT // 2) // FRAME_SHIFT


@lru_cache(maxsize=8)
def _frame_index(n: int) -> torch.Tensor:
    """(T, 400) sample indices of each frame, out-of-range samples reflected as kaldi does."""
    t = num_frames(n)
    start = torch.arange(t) * FRAME_SHIFT + FRAME_SHIFT // 2 - FRAME_LENGTH // 2
    idx = start[:, None] + torch.arange(FRAME_LENGTH)[None, :]
    idx = torch.where(idx < 0, -idx - 1, idx)
    idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
    return idx.clamp_(0, n - 1)


@lru_cache(maxsize=2)
def _window(kind: str) -> torch.Tensor:
    n = torch.arange(FRAME_LENGTH, dtype=torch.float64)
    if kind == "povey":  # kaldi: symmetric Hann to the power 0.85
        return (0.5 - 0.5 * torch.cos(2 * math.pi * n / (FRAME_LENGTH - 1))).pow(0.85).float()
    return (0.5 - 0.5 * torch.cos(2 * math.pi * n / FRAME_LENGTH)).float()  # kaldi-native-fbank "hann"


def _mel_htk(f: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(f / 700.0)


def _mel_slaney(f: torch.Tensor) -> torch.Tensor:
    log_part = 15 + 14.545078505785561 * torch.log(f.clamp_min(1e-10) / 1000)
    return torch.where(f <= 1000, f * 3 / 200.0, log_part)


def _inv_mel_slaney(m: torch.Tensor) -> torch.Tensor:
    return torch.where(m <= 15, 200.0 / 3 * m, 1000 * torch.exp((m - 15) * 0.06875177742094911))


@lru_cache(maxsize=4)
def mel_filters(frontend: str, num_bins: int = NUM_BINS) -> torch.Tensor:
    """(num_bins, N_FFT/2 + 1) triangular filters of kaldi-native-fbank for ``frontend``."""
    if frontend not in _PRESETS:
        raise ValueError(f"unknown frontend '{frontend}' (frontends: {', '.join(FRONTENDS)})")
    kind, _, low, high_freq, _ = _PRESETS[frontend]
    nyquist = SAMPLE_RATE / 2
    high = high_freq if high_freq > 0 else nyquist + high_freq
    n_fft_bins = N_FFT // 2
    width = SAMPLE_RATE / N_FFT
    out = torch.zeros(num_bins, n_fft_bins + 1, dtype=torch.float64)
    if kind == "kaldi":
        lo = _mel_htk(torch.tensor(low, dtype=torch.float64))
        hi = _mel_htk(torch.tensor(high, dtype=torch.float64))
        delta = (hi - lo) / (num_bins + 1)
        mel = _mel_htk(torch.arange(n_fft_bins, dtype=torch.float64) * width)
        for b in range(num_bins):
            left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
            up = (mel - left) / (center - left)
            down = (right - mel) / (right - center)
            w = torch.where(mel <= center, up, down)
            out[b, :n_fft_bins] = torch.where((mel > left) & (mel < right), w, torch.zeros_like(w))
    else:
        lo = _mel_slaney(torch.tensor(low, dtype=torch.float64))
        hi = _mel_slaney(torch.tensor(high, dtype=torch.float64))
        delta = (hi - lo) / (num_bins + 1)
        hz = torch.arange(n_fft_bins + 1, dtype=torch.float64) * width
        for b in range(num_bins):
            left, center, right = (_inv_mel_slaney(lo + k * delta) for k in (b, b + 1, b + 2))
            up = (hz - left) / (center - left)
            down = (right - hz) / (right - center)
            w = torch.where(hz <= center, up, down) * (2.0 / (right - left))
            out[b] = torch.where((hz > left) & (hz < right), w, torch.zeros_like(w))
    return out.float()


def fbank(waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE, frontend: Frontend = "nemo"
          ) -> torch.Tensor:
    """Log-mel filterbank ``(T, 80)`` of a mono waveform ``(S,)`` with samples in [-1, 1].

    Other sample rates are resampled to 16 kHz first (sherpa-onnx resamples likewise). ``T`` is
    ``(S + 80) // 160``. See the module docstring for the two sherpa-onnx front ends.
    """
    if frontend not in _PRESETS:
        raise ValueError(f"unknown frontend '{frontend}' (frontends: {', '.join(FRONTENDS)})")
    _, window, _, _, remove_dc = _PRESETS[frontend]
    if waveform.dim() != 1:
        raise ValueError(f"fbank expects a mono waveform (S,), got shape {tuple(waveform.shape)}")
    wave = waveform.float()
    if sample_rate != SAMPLE_RATE:
        from compressor.data.audio import resample

        wave = resample(wave, sample_rate, SAMPLE_RATE)
    n = wave.numel()
    if n < 1:
        return torch.zeros(0, NUM_BINS)
    frames = wave[_frame_index(n)]  # (T, 400)
    if remove_dc:
        frames = frames - frames.mean(dim=1, keepdim=True)
    prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = (frames - PREEMPH * prev) * _window(window)
    spec = torch.fft.rfft(frames, n=N_FFT)
    power = spec.real.square() + spec.imag.square()
    mel = power @ mel_filters(frontend).T
    return mel.clamp_min(_EPS).log()


def per_feature_normalize(features: torch.Tensor) -> torch.Tensor:
    """Per-utterance, per-dimension mean/variance normalisation ``(T, D) -> (T, D)``, exactly as sherpa-onnx
    applies it to models whose metadata says ``normalize_type=per_feature`` (NeMo's ``per_feature``):
    ``(x - mean) / (sqrt(var) + 1e-5)`` with the population variance over the frames."""
    if features.shape[0] == 0:
        return features
    mean = features.mean(dim=0, keepdim=True)
    var = (features.square().mean(dim=0, keepdim=True) - mean.square()).clamp_min(0.0)
    return (features - mean) / (var.sqrt() + 1e-5)


def feature_stats(features: Iterable[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Per-dimension mean and standard deviation over all frames (for global CMVN)."""
    total = torch.zeros(NUM_BINS, dtype=torch.float64)
    total_sq = torch.zeros(NUM_BINS, dtype=torch.float64)
    count = 0
    for f in features:
        f64 = f.double()
        total += f64.sum(0)
        total_sq += f64.square().sum(0)
        count += f.shape[0]
    if count == 0:
        return [0.0] * NUM_BINS, [1.0] * NUM_BINS
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-8).sqrt()
    return mean.tolist(), std.tolist()
