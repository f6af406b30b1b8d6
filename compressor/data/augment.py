"""On-the-fly waveform augmentation for the training split, for speaker, channel and room robustness: speed
perturbation, reverberation (generated room impulse responses, or the user's recorded ones), additive noise at an
SNR (generated white noise, or the user's noise recordings such as MUSAN), gain, and telephone band-limiting
(8 kHz audio, 300-3400 Hz, resampled back to 16 kHz) (torchaudio). Each example's randomness comes from
(seed, epoch, index), so an epoch's augmented data is reproducible and a resumed run sees the same audio.

The options added after the first three draw from the example's generator only when they are set, after the
first three, so audio augmented (and corpora synthesised) with the first three stays bit-identical."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from pydantic import Field, field_validator

from compressor.core.registry import Args
from compressor.data.audio import load_audio, resample

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


class AugmentArgs(Args):
    """Waveform augmentation (applied to the train split only, each with probability ``prob``)."""

    noise_snr: tuple[float, float] | None = Field(default=None, description="white noise SNR range (dB)")
    speeds: list[float] | None = Field(default=None, description="speed factors, e.g. [0.9, 1.0, 1.1]")
    reverb: float = Field(default=0.0, ge=0, le=1, description="probability of a synthetic room reverb")
    prob: float = Field(default=1.0, ge=0, le=1)
    noise_dir: str | None = Field(default=None, description="a folder of noise recordings (e.g. MUSAN's noise/ and "
                                                            "music/), mixed at noise_snr instead of white noise")
    rir_dir: str | None = Field(default=None, description="a folder of recorded room impulse responses, used by "
                                                          "reverb instead of generated ones")
    gain_db: tuple[float, float] | None = Field(default=None, description="a random gain in this range (dB)")
    band_limit: float = Field(default=0.0, ge=0, le=1, description="probability of a telephone channel: 8 kHz, "
                                                                   "300-3400 Hz, resampled back")
    silence: tuple[float, float] | None = Field(default=None, description="seconds of silence added before and "
                                                "after the speech, each drawn from this range, at the recording's "
                                                "own noise floor (a microphone hears silence around an utterance)")

    @field_validator("silence")
    @classmethod
    def _seconds(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 <= v[0] <= v[1] <= 30:
            raise ValueError(f"silence must be [low, high] seconds with 0 <= low <= high <= 30, not {list(v)}")
        return v

    @field_validator("noise_dir", "rir_dir")
    @classmethod
    def _folder(cls, v: str | None) -> str | None:
        if v is not None and not audio_files(v):
            raise ValueError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in '{v}'")
        return v

    def active(self) -> bool:
        return (self.noise_snr is not None or bool(self.speeds) or self.reverb > 0 or self.gain_db is not None
                or self.band_limit > 0 or self.silence is not None)


@lru_cache(maxsize=8)
def audio_files(folder: str) -> tuple[Path, ...]:
    """The audio files below ``folder``, sorted (so a seed picks the same file on every machine)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        return ()
    return tuple(sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()))


@lru_cache(maxsize=256)
def _recording(path: Path, sample_rate: int) -> torch.Tensor:
    return load_audio(path, sample_rate, max_seconds=600.0)


def _pick(folder: str, g: torch.Generator, sample_rate: int) -> torch.Tensor:
    files = audio_files(folder)
    return _recording(files[int(torch.randint(len(files), (1,), generator=g))], sample_rate)


def _noise_from(folder: str, n: int, g: torch.Generator, sample_rate: int) -> torch.Tensor:
    """``n`` samples of a recording from ``folder``, from a random offset, looped when it is shorter."""
    rec = _pick(folder, g, sample_rate)
    start = int(torch.randint(rec.numel(), (1,), generator=g))
    reps = (start + n) // rec.numel() + 1
    return rec.repeat(reps)[start:start + n]


def _telephone(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    import torchaudio.functional as AF

    narrow = resample(wave, sample_rate, 8000)
    narrow = AF.highpass_biquad(narrow, 8000, 300.0)
    narrow = AF.lowpass_biquad(narrow, 8000, 3400.0)
    return resample(narrow, 8000, sample_rate)[: wave.numel()]


def _room_impulse(g: torch.Generator, sample_rate: int) -> torch.Tensor:
    """An exponentially decaying noise impulse response (RT60 0.15–0.6 s) with a direct path."""
    rt60 = 0.15 + 0.45 * float(torch.rand(1, generator=g))
    n = int(rt60 * sample_rate)
    t = torch.arange(n) / sample_rate
    ir = torch.randn(n, generator=g) * torch.exp(-6.9 * t / rt60)
    ir[0] = 1.0
    return ir / ir.norm()


def noise_floor(wave: torch.Tensor, sample_rate: int = 16000) -> float:
    """RMS of a recording's quietest 25 ms frames (the 2nd percentile): the level of its silence."""
    frame = max(1, int(0.025 * sample_rate))
    n = wave.numel() // frame
    if n == 0:
        return 0.0
    rms = wave[: n * frame].reshape(n, frame).pow(2).mean(1).sqrt()
    return float(rms.kthvalue(max(1, n // 50)).values)


def add_silence(wave: torch.Tensor, before: float, after: float, g: torch.Generator,
                sample_rate: int = 16000) -> torch.Tensor:
    """``before`` and ``after`` seconds of Gaussian noise at the recording's noise floor (at least -80 dBFS, so
    digital silence never appears) around ``wave``."""
    level = max(noise_floor(wave, sample_rate), 1e-4)
    pad = [torch.randn(int(round(s * sample_rate)), generator=g) * level for s in (before, after)]
    return torch.cat([pad[0], wave, pad[1]])


def augment(wave: torch.Tensor, args: AugmentArgs, seed: int, sample_rate: int = 16000) -> torch.Tensor:
    """Apply the configured augmentations to a mono waveform ``(S,)``; deterministic in ``seed``."""
    import torchaudio.functional as AF

    g = torch.Generator().manual_seed(seed)
    if args.silence is not None and float(torch.rand(1, generator=g)) < args.prob:
        lo, hi = args.silence
        before, after = (lo + (hi - lo) * float(torch.rand(1, generator=g)) for _ in range(2))
        wave = add_silence(wave, before, after, g, sample_rate)
    if args.speeds and float(torch.rand(1, generator=g)) < args.prob:
        factor = args.speeds[int(torch.randint(len(args.speeds), (1,), generator=g))]
        if factor != 1.0:
            # speed perturbation = resample and play back at the original rate (pitch and tempo change)
            wave = resample(wave, int(round(sample_rate * factor)), sample_rate)
    if args.reverb > 0 and float(torch.rand(1, generator=g)) < args.reverb * args.prob:
        if args.rir_dir:
            ir = _pick(args.rir_dir, g, sample_rate)
            ir = ir / ir.norm().clamp_min(1e-8)
        else:
            ir = _room_impulse(g, sample_rate)
        wave = AF.fftconvolve(wave, ir)[: wave.numel()]
    if args.noise_snr is not None and float(torch.rand(1, generator=g)) < args.prob:
        lo, hi = args.noise_snr
        snr = lo + (hi - lo) * float(torch.rand(1, generator=g))
        if args.noise_dir:
            noise = _noise_from(args.noise_dir, wave.numel(), g, sample_rate)
        else:
            noise = torch.randn(wave.numel(), generator=g)
        if noise.abs().max() > 0:
            wave = AF.add_noise(wave[None], noise[None], torch.tensor([snr]))[0]
    if args.band_limit > 0 and float(torch.rand(1, generator=g)) < args.band_limit * args.prob:
        wave = _telephone(wave, sample_rate)
    if args.gain_db is not None and float(torch.rand(1, generator=g)) < args.prob:
        lo, hi = args.gain_db
        wave = wave * 10 ** ((lo + (hi - lo) * float(torch.rand(1, generator=g))) / 20)
    peak = wave.abs().max()
    return wave / peak if peak > 1 else wave
