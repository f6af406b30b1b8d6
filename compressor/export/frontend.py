"""The feature front ends of sherpa-onnx's recognizers, computed with sherpa-onnx's own library.

sherpa-onnx computes features itself, with kaldi-native-fbank, and configures them per recognizer. For the
NeMo model types an exported model is loaded as it does **not** use the kaldi defaults: it switches to a
librosa-style (Slaney) mel filterbank from 0 Hz, without DC-offset removal. The settings (sherpa-onnx 2.x
sources ``offline-recognizer-transducer-nemo-impl.h``, ``online-recognizer-transducer-nemo-impl.h``,
``offline-recognizer-ctc-impl.h``):

===================  ======  ============  ==================  =========  ====================================
front end            window  mel range     mel filters         remove DC  used by
===================  ======  ============  ==================  =========  ====================================
``nemo_transducer``  povey   0..7600 Hz    Slaney, Slaney-norm no         ``OfflineRecognizer`` NeMo transducer
``nemo_online``      hann    0..8000 Hz    Slaney, Slaney-norm no         ``OnlineRecognizer`` NeMo transducer
``nemo_ctc``         hann    0..8000 Hz    Slaney, Slaney-norm no         ``OfflineRecognizer.from_nemo_ctc``
``kaldi``            povey   20..7600 Hz   HTK (kaldi)         yes        icefall-style models
===================  ======  ============  ==================  =========  ====================================

All: 16 kHz, 80 bins, 25 ms frames every 10 ms, ``snip_edges=False``, pre-emphasis 0.97, no dither, a
512-point FFT of the power spectrum, samples in [-1, 1] (not scaled by 32768), ``log(max(e, FLT_EPSILON))``.
``nemo_online`` and ``nemo_ctc`` are the same computation; the data layer's ``nemo`` is ``nemo_transducer``.

:func:`sherpa_fbank` calls kaldi-native-fbank with exactly these options, so its features *are* sherpa-onnx's
(read back from sherpa-onnx's ``OnlineStream.get_frames``: identical, max |diff| 0 on recorded speech). The
data layer's torch implementation (:func:`compressor.data.features.fbank`, used for training because it is
the one the feature cache and the augmentation share) differs from them by float32 rounding, at most 2e-4
on recorded speech (``benchmarks/checks/frontend_parity.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

FRONTENDS = ("kaldi", "nemo_transducer", "nemo_ctc", "nemo_online")
#: names the data layer uses -> the runtime front end they equal
ALIASES = {"nemo": "nemo_transducer"}


@dataclass(frozen=True)
class FrontEnd:
    """A front end's settings, as written into an export's manifest."""

    name: str
    window: str
    low_freq_hz: float
    high_freq_hz: float
    mel_scale: str
    remove_dc_offset: bool
    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    n_fft: int = 512
    preemphasis: float = 0.97
    dither: float = 0.0
    snip_edges: bool = False
    samples_scale: str = "float samples in [-1, 1]"
    log_floor: str = "log(max(energy, FLT_EPSILON))"
    library: str = "kaldi-native-fbank"

    def settings(self) -> tuple:
        """What decides the features (two front ends with equal settings compute the same features)."""
        return (self.window, self.low_freq_hz, self.high_freq_hz, self.mel_scale, self.remove_dc_offset)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_SLANEY = "slaney (librosa), slaney-normalised filters"
_SPECS = {
    "nemo_transducer": FrontEnd("nemo_transducer", "povey", 0.0, 7600.0, _SLANEY, False),
    "nemo_online": FrontEnd("nemo_online", "hann", 0.0, 8000.0, _SLANEY, False),
    "nemo_ctc": FrontEnd("nemo_ctc", "hann", 0.0, 8000.0, _SLANEY, False),
    "kaldi": FrontEnd("kaldi", "povey", 20.0, 7600.0, "htk (kaldi)", True),
}


def canonical(name: str) -> str:
    """The runtime name of a front end (``nemo`` -> ``nemo_transducer``); ValueError for unknown ones."""
    name = ALIASES.get(name, name)
    if name not in _SPECS:
        raise ValueError(f"unknown front end '{name}' (valid: {', '.join(FRONTENDS)}, nemo)")
    return name


def canonical_or_none(name: str | None) -> str | None:
    """:func:`canonical`, passing unknown names (a plugin dataset's own front end) and None through."""
    try:
        return None if name is None else canonical(name)
    except ValueError:
        return name


def frontend(name: str) -> FrontEnd:
    """The settings of front end ``name`` (data-layer names accepted)."""
    return _SPECS[canonical(name)]


def same_features(a: str | None, b: str | None) -> bool | None:
    """Whether two front ends compute the same features; None when either is unknown."""
    if a is None or b is None:
        return None
    try:
        return frontend(a).settings() == frontend(b).settings()
    except ValueError:
        return None


def _options(fe: FrontEnd) -> Any:
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = fe.sample_rate
    opts.frame_opts.dither = fe.dither
    opts.frame_opts.snip_edges = fe.snip_edges
    opts.frame_opts.window_type = fe.window
    opts.frame_opts.remove_dc_offset = fe.remove_dc_offset
    opts.frame_opts.preemph_coeff = fe.preemphasis
    opts.mel_opts.num_bins = fe.num_mel_bins
    opts.mel_opts.low_freq = fe.low_freq_hz
    # kaldi-native-fbank reads high_freq <= 0 as an offset from Nyquist; sherpa-onnx passes -400 or 8000
    opts.mel_opts.high_freq = fe.high_freq_hz - fe.sample_rate / 2 if fe.high_freq_hz < fe.sample_rate / 2 \
        else fe.high_freq_hz
    opts.mel_opts.is_librosa = fe.mel_scale.startswith("slaney")
    return opts


def sherpa_fbank(waveform: torch.Tensor | np.ndarray, sample_rate: int = 16000,
                 frontend_name: str = "nemo_transducer") -> torch.Tensor:
    """Log-mel features ``(T, 80)`` of a mono 16 kHz waveform in [-1, 1], as sherpa-onnx computes them.

    ``frontend_name`` is one of :data:`FRONTENDS` (or the data layer's ``nemo``). Other sample rates are
    refused: resample first.
    """
    import kaldi_native_fbank as knf

    if sample_rate != 16000:
        raise ValueError(f"sherpa_fbank expects 16 kHz audio, got {sample_rate} Hz: resample first")
    fe = frontend(frontend_name)
    wave = np.ascontiguousarray(np.asarray(waveform, dtype=np.float32).reshape(-1))
    fb = knf.OnlineFbank(_options(fe))
    fb.accept_waveform(float(sample_rate), wave.tolist())
    fb.input_finished()
    n = fb.num_frames_ready
    if n == 0:
        return torch.zeros(0, fe.num_mel_bins)
    return torch.from_numpy(np.stack([np.asarray(fb.get_frame(i), dtype=np.float32) for i in range(n)]))
