"""Waveform augmentation for channel and room robustness: recorded noise and room impulse responses, gain,
telephone band-limiting; deterministic in the seed, and the earlier options' audio unchanged by the new ones."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile as sf
import torch

from compressor.data.augment import AugmentArgs, audio_files, augment

SR = 16000


def tone_and_hiss(seconds: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(SR * seconds)) / SR
    return 0.1 * torch.sin(2 * math.pi * 440 * t) + 0.2 * torch.randn(t.numel(), generator=g)


def energy_above(wave: torch.Tensor, hz: float) -> float:
    spec = torch.fft.rfft(wave).abs() ** 2
    freqs = torch.fft.rfftfreq(wave.numel(), 1 / SR)
    return float(spec[freqs > hz].sum() / spec.sum())


def test_telephone_band_limit_removes_what_a_phone_line_cannot_carry() -> None:
    wave = tone_and_hiss()
    assert energy_above(wave, 4000) > 0.2  # white hiss: half its energy is above 4 kHz
    out = augment(wave, AugmentArgs(band_limit=1.0), seed=3)
    assert out.shape == wave.shape
    assert energy_above(out, 4000) < 0.01
    assert torch.equal(out, augment(wave, AugmentArgs(band_limit=1.0), seed=3))


def test_gain_scales_by_a_factor_in_the_range() -> None:
    wave = tone_and_hiss() * 0.1
    for seed in range(5):
        out = augment(wave, AugmentArgs(gain_db=(-6.0, 6.0)), seed=seed)
        ratio = float(out.norm() / wave.norm())
        assert 10 ** (-6 / 20) - 1e-4 <= ratio <= 10 ** (6 / 20) + 1e-4


def test_recorded_noise_and_room_impulses_from_folders(tmp_path: Path) -> None:
    noise_dir, rir_dir = tmp_path / "noise", tmp_path / "rirs"
    noise_dir.mkdir()
    (rir_dir / "room").mkdir(parents=True)
    g = torch.Generator().manual_seed(1)
    hum = 0.2 * torch.sin(2 * math.pi * 50 * torch.arange(4000) / SR)  # 0.25 s, looped over longer audio
    sf.write(noise_dir / "hum.wav", hum.numpy(), SR)
    sf.write(noise_dir / "babble.flac", (0.1 * torch.randn(SR, generator=g)).numpy(), SR)
    identity = torch.zeros(800)
    identity[0] = 1.0
    sf.write(rir_dir / "room" / "direct.wav", identity.numpy(), SR)
    assert [p.name for p in audio_files(str(noise_dir))] == ["babble.flac", "hum.wav"]
    wave = tone_and_hiss()
    # a direct-path-only impulse response leaves the audio as it was
    direct = augment(wave, AugmentArgs(reverb=1.0, rir_dir=str(rir_dir)), seed=0)
    assert torch.allclose(direct, wave, atol=1e-5)
    recorded = augment(wave, AugmentArgs(noise_snr=(5.0, 5.0), noise_dir=str(noise_dir)), seed=7)
    white = augment(wave, AugmentArgs(noise_snr=(5.0, 5.0)), seed=7)
    assert not torch.allclose(recorded, white)
    assert torch.equal(recorded, augment(wave, AugmentArgs(noise_snr=(5.0, 5.0), noise_dir=str(noise_dir)), seed=7))
    added = recorded - wave
    snr = 10 * math.log10(float(wave.pow(2).sum() / added.pow(2).sum()))
    assert abs(snr - 5.0) < 0.5


def test_a_folder_without_audio_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        AugmentArgs(noise_dir=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no audio files"):
        AugmentArgs(rir_dir=str(tmp_path / "missing"))


def test_new_options_leave_the_earlier_ones_audio_unchanged() -> None:
    """The first three options draw from the generator first, the new ones only when set: a spec (or a corpus)
    that uses only the first three gets the same audio as before they existed."""
    wave = tone_and_hiss()
    old = AugmentArgs(noise_snr=(0.0, 10.0), reverb=1.0, speeds=[0.9, 1.1], prob=0.8)
    new = AugmentArgs(noise_snr=(0.0, 10.0), reverb=1.0, speeds=[0.9, 1.1], prob=0.8, band_limit=0.0)
    for seed in range(5):
        assert torch.equal(augment(wave, old, seed=seed), augment(wave, new, seed=seed))
    assert AugmentArgs(band_limit=0.5).active() and AugmentArgs(gain_db=(-3.0, 3.0)).active()
    assert not AugmentArgs().active()


def test_silence_around_the_speech_at_the_recordings_noise_floor() -> None:
    g = torch.Generator().manual_seed(2)
    speech = 0.3 * torch.sin(2 * math.pi * 220 * torch.arange(SR) / SR)
    floor = torch.cat([0.001 * torch.randn(SR // 2, generator=g), speech])  # a quiet start: the floor
    args = AugmentArgs(silence=(0.2, 0.5))
    for seed in range(4):
        out = augment(floor, args, seed=seed)
        added = out.numel() - floor.numel()
        assert 0.4 * SR - 2 <= added <= 1.0 * SR + 2
        pad_before = next(k for k in range(added + 1) if torch.equal(out[k:k + floor.numel()], floor))
        assert 0.2 * SR - 1 <= pad_before <= 0.5 * SR + 1
        pad = out[:pad_before]
        assert 0.0005 < float(pad.pow(2).mean().sqrt()) < 0.002  # about the recording's own floor
        assert torch.equal(out, augment(floor, args, seed=seed))
    paused = torch.cat([speech, torch.zeros(SR // 10), speech])  # clean speech with a pause: digital silence
    clean = augment(paused, AugmentArgs(silence=(0.3, 0.3)), seed=0)
    assert clean.numel() == paused.numel() + 2 * int(0.3 * SR)
    assert 5e-5 < float(clean[: int(0.3 * SR)].pow(2).mean().sqrt()) < 2e-4  # a clean recording: -80 dBFS


def test_silence_range_checked() -> None:
    with pytest.raises(ValueError, match="silence"):
        AugmentArgs(silence=(0.5, 0.1))
