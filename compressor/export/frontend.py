"""The feature front ends of sherpa-onnx's recognizers, re-implemented in torch.

sherpa-onnx computes features itself (kaldi-native-fbank) and configures them per model type. For the NeMo
model types an exported model is loaded as (``from_transducer(..., model_type="nemo_transducer")`` and
``from_nemo_ctc``) it does **not** use the kaldi defaults: it switches to a librosa-style (Slaney) mel
filterbank from 0 Hz, without DC-offset removal. The exact settings (sherpa-onnx 2.x sources,
``offline-recognizer-transducer-nemo-impl.h`` and ``offline-recognizer-ctc-impl.h``):

=================  ==========  ===========  =============  ==========  =======  ========
front end          window      low..high    mel            remove DC   preemph  dither
=================  ==========  ===========  =============  ==========  =======  ========
``kaldi``          povey       20..7600 Hz  HTK (kaldi)    yes         0.97     0
``nemo_transducer``  povey     0..7600 Hz   Slaney+norm    no          0.97     0
``nemo_ctc``       hann        0..8000 Hz   Slaney+norm    no          0.97     0
``nemo_online``    hann        0..8000 Hz   Slaney+norm    no          0.97     0
=================  ==========  ===========  =============  ==========  =======  ========

``nemo_online`` is what the *online* (streaming) NeMo transducer recognizer computes
(``online-recognizer-transducer-nemo-impl.h``): the same as ``nemo_ctc``, not the offline transducer's.

``nemo_transducer``, ``nemo_ctc`` and ``nemo_online`` were checked against sherpa-onnx 2.0.1 itself (probe
models that reveal the features they receive; the streaming export's exact parity), all four against
kaldi-native-fbank 1.22. All use 25 ms frames every 10 ms, ``snip_edges=False`` (reflected
edges), a 512-point FFT, samples in [-1, 1] (not scaled by 32768) and ``log(max(energy, FLT_EPSILON))``.
A model must be trained on the front end of the recognizer it is exported for, or its transcripts on device
differ from those in PyTorch; the exporter reports the match (``report["frontend"]``) and its transcript
parity check fails loudly when the difference matters.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

FRONTENDS = ("kaldi", "nemo_transducer", "nemo_ctc", "nemo_online")
_EPS = float(torch.finfo(torch.float32).eps)


def _hz_to_mel_htk(f: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(f / 700.0)


def _hz_to_mel_slaney(f: float) -> float:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return f / f_sp if f < min_log_hz else min_log_mel + math.log(f / min_log_hz) / logstep


def _mel_to_hz_slaney(m: float) -> float:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return f_sp * m if m < min_log_mel else min_log_hz * math.exp(logstep * (m - min_log_mel))


@lru_cache(maxsize=16)
def mel_banks(kind: str, num_bins: int = 80, sample_rate: int = 16000, n_fft: int = 512,
              low_freq: float = 20.0, high_freq: float = -400.0) -> torch.Tensor:
    """(num_bins, n_fft//2+1) filterbank as kaldi-native-fbank builds it (``kaldi`` or ``librosa``)."""
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0 else nyquist + high_freq
    width = sample_rate / n_fft
    nbins = n_fft // 2
    out = torch.zeros(num_bins, nbins + 1, dtype=torch.float64)
    if kind == "kaldi":
        lo_mel = float(_hz_to_mel_htk(torch.tensor(low_freq, dtype=torch.float64)))
        hi_mel = float(_hz_to_mel_htk(torch.tensor(high, dtype=torch.float64)))
        delta = (hi_mel - lo_mel) / (num_bins + 1)
        mel = _hz_to_mel_htk(torch.arange(nbins, dtype=torch.float64) * width)
        for b in range(num_bins):
            left, center, right = (lo_mel + (b + k) * delta for k in range(3))
            up = (mel - left) / (center - left)
            down = (right - mel) / (right - center)
            w = torch.where(mel <= center, up, down)
            w = torch.where((mel > left) & (mel < right), w, torch.zeros_like(w))
            out[b, :nbins] = w
    elif kind == "librosa":
        lo_mel, hi_mel = _hz_to_mel_slaney(low_freq), _hz_to_mel_slaney(high)
        delta = (hi_mel - lo_mel) / (num_bins + 1)
        hz = torch.arange(nbins + 1, dtype=torch.float64) * width
        for b in range(num_bins):
            left, center, right = (_mel_to_hz_slaney(lo_mel + (b + k) * delta) for k in range(3))
            up = (hz - left) / (center - left)
            down = (right - hz) / (right - center)
            w = torch.where(hz <= center, up, down) * (2.0 / (right - left))
            out[b] = torch.where((hz > left) & (hz < right), w, torch.zeros_like(w))
    else:
        raise ValueError(f"unknown mel kind '{kind}'")
    return out.float()


def _settings(frontend: str) -> dict:
    if frontend == "kaldi":
        return dict(window="povey", low=20.0, high=-400.0, mel="kaldi", remove_dc=True)
    if frontend == "nemo_transducer":
        return dict(window="povey", low=0.0, high=-400.0, mel="librosa", remove_dc=False)
    if frontend in ("nemo_ctc", "nemo_online"):
        return dict(window="hann", low=0.0, high=0.0, mel="librosa", remove_dc=False)
    raise ValueError(f"unknown front end '{frontend}' (valid: {', '.join(FRONTENDS)})")


def _frames(x: torch.Tensor, length: int, shift: int) -> torch.Tensor:
    """Kaldi framing with ``snip_edges=False``: (S,) -> (T, length), edges reflected."""
    n = x.numel()
    num = (n + shift // 2) // shift
    if num == 0:
        return x.new_zeros(0, length)
    offset = shift // 2 - length // 2
    idx = offset + torch.arange(num)[:, None] * shift + torch.arange(length)[None, :]
    # reflect like kaldi: index -1 -> 0, -2 -> 1, ...; n -> n-1, n+1 -> n-2
    idx = torch.where(idx < 0, -idx - 1, idx)
    idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
    return x[idx.clamp(0, n - 1)]


def sherpa_fbank(waveform: torch.Tensor, sample_rate: int = 16000, frontend: str = "nemo_transducer",
                 num_bins: int = 80) -> torch.Tensor:
    """Log-mel features (T, num_bins) of a mono waveform in [-1, 1] as sherpa-onnx computes them.

    ``frontend`` is one of :data:`FRONTENDS` (see the module docstring). Only 16 kHz input is supported;
    resample first.
    """
    if sample_rate != 16000:
        raise ValueError(f"sherpa_fbank expects 16 kHz audio, got {sample_rate} Hz: resample first")
    s = _settings(frontend)
    x = waveform.detach().to(torch.float64).reshape(-1)
    frames = _frames(x, 400, 160)
    if s["remove_dc"]:
        frames = frames - frames.mean(dim=1, keepdim=True)
    prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - 0.97 * prev
    n = torch.arange(400, dtype=torch.float64)
    if s["window"] == "povey":  # kaldi: symmetric Hann to the power 0.85
        window = (0.5 - 0.5 * torch.cos(2 * math.pi * n / 399)).pow(0.85)
    else:  # kaldi-native-fbank's "hann" is the periodic one
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / 400)
    frames = frames * window
    spec = torch.fft.rfft(frames, n=512).abs().pow(2)
    banks = mel_banks(s["mel"], num_bins, 16000, 512, s["low"], s["high"]).to(torch.float64)
    mel = spec @ banks.T
    return torch.log(mel.clamp_min(_EPS)).float()
