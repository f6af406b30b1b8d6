"""On-the-fly waveform augmentation for the training split: noise at an SNR, speed perturbation and
reverberation (torchaudio). Each example's randomness comes from (seed, epoch, index), so an epoch's
augmented data is reproducible and a resumed run sees the same audio."""

from __future__ import annotations

import torch
from pydantic import Field

from compressor.core.registry import Args
from compressor.data.audio import resample


class AugmentArgs(Args):
    """Waveform augmentation (applied to the train split only, each with probability ``prob``)."""

    noise_snr: tuple[float, float] | None = Field(default=None, description="white noise SNR range (dB)")
    speeds: list[float] | None = Field(default=None, description="speed factors, e.g. [0.9, 1.0, 1.1]")
    reverb: float = Field(default=0.0, ge=0, le=1, description="probability of a synthetic room reverb")
    prob: float = Field(default=1.0, ge=0, le=1)

    def active(self) -> bool:
        return self.noise_snr is not None or bool(self.speeds) or self.reverb > 0


def _room_impulse(g: torch.Generator, sample_rate: int) -> torch.Tensor:
    """An exponentially decaying noise impulse response (RT60 0.15–0.6 s) with a direct path."""
    rt60 = 0.15 + 0.45 * float(torch.rand(1, generator=g))
    n = int(rt60 * sample_rate)
    t = torch.arange(n) / sample_rate
    ir = torch.randn(n, generator=g) * torch.exp(-6.9 * t / rt60)
    ir[0] = 1.0
    return ir / ir.norm()


def augment(wave: torch.Tensor, args: AugmentArgs, seed: int, sample_rate: int = 16000) -> torch.Tensor:
    """Apply the configured augmentations to a mono waveform ``(S,)``; deterministic in ``seed``."""
    import torchaudio.functional as AF

    g = torch.Generator().manual_seed(seed)
    if args.speeds and float(torch.rand(1, generator=g)) < args.prob:
        factor = args.speeds[int(torch.randint(len(args.speeds), (1,), generator=g))]
        if factor != 1.0:
            # speed perturbation = resample and play back at the original rate (pitch and tempo change)
            wave = resample(wave, int(round(sample_rate * factor)), sample_rate)
    if args.reverb > 0 and float(torch.rand(1, generator=g)) < args.reverb * args.prob:
        ir = _room_impulse(g, sample_rate)
        wave = AF.fftconvolve(wave, ir)[: wave.numel()]
    if args.noise_snr is not None and float(torch.rand(1, generator=g)) < args.prob:
        lo, hi = args.noise_snr
        snr = lo + (hi - lo) * float(torch.rand(1, generator=g))
        noise = torch.randn(wave.numel(), generator=g)
        wave = AF.add_noise(wave[None], noise[None], torch.tensor([snr]))[0]
    peak = wave.abs().max()
    return wave / peak if peak > 1 else wave
