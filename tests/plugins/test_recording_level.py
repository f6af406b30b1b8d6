"""recording_level: the feature-level gain equals the gain applied to the waveform, silence comes from the
utterance's own quietest frames and lengthens it, and the draws come from the global generator."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from support.plugin_ctx import build_strategy, logmel_ctx

from compressor.data.features import fbank
from plugins.recording_level import LOG_FLOOR, RecordingLevel, with_gain, with_silence


def test_feature_gain_equals_the_waveform_gain() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    wave = 0.2 * torch.sin(2 * math.pi * 300 * t) + 0.01 * torch.randn(16000, generator=g)
    x = fbank(wave, 16000, frontend="nemo")
    for db in (-20.0, 6.0):
        louder = fbank(wave * 10 ** (db / 20), 16000, frontend="nemo")
        exact = x > LOG_FLOOR + 1e-4  # a channel at the floor has no energy to scale that the features keep
        assert int((~exact).sum()) > 0
        assert torch.allclose(with_gain(x, db)[exact], louder[exact], atol=2e-3)
        assert (with_gain(x, db)[~exact] == LOG_FLOOR).all()
    assert float(with_gain(x, -400.0).max()) == pytest.approx(LOG_FLOOR)


def test_silence_is_drawn_from_the_quietest_frames() -> None:
    x = torch.cat([torch.full((3, 4), -12.0), torch.zeros(20, 4)])  # three quiet frames, then speech
    torch.manual_seed(0)
    out = with_silence(x, 5, 7, floor_frames=3)
    assert out.shape == (35, 4)
    assert torch.equal(out[5:28], x)
    assert (out[:5] == -12.0).all() and (out[28:] == -12.0).all()


def test_plugin_lengthens_utterances_shifts_their_level_and_is_seeded() -> None:
    ctx, data = logmel_ctx([30, 12, 20])
    plugin = build_strategy("recording_level", gain_db=[-20, -10], silence=[0.05, 0.1])
    batch = data.collate([data.dataset("train")[i] for i in range(3)])
    original = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in batch.items()}

    def run(seed: int) -> dict:
        b = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in original.items()}
        torch.manual_seed(seed)
        plugin.compressor_transform_batch(ctx, b)
        return b

    out = run(0)
    assert torch.equal(out["features"], run(0)["features"])
    assert not torch.equal(out["features"], run(1)["features"])
    for i, n in enumerate(original["feature_lengths"].tolist()):
        m = int(out["feature_lengths"][i])
        assert n + 10 <= m <= n + 20  # 5-10 frames before and after
        assert (out["features"][i, m:] == 0).all()
        # somewhere inside sit the utterance's frames, 10-20 dB lower
        inner = out["features"][i, :m]
        shifts = [float((inner[k:k + n] - original["features"][i, :n]).mean()) for k in range(m - n + 1)]
        assert any(-20 * math.log(10) / 10 - 1e-4 <= s <= -10 * math.log(10) / 10 + 1e-4 for s in shifts)
    assert -20 <= ctx.scalars["recording_level_gain_db"] <= -10
    assert 0.1 <= ctx.scalars["recording_level_silence_s"] <= 0.2 + 1e-9


def test_arguments_that_do_nothing_are_refused() -> None:
    with pytest.raises(ValidationError, match="nothing"):
        RecordingLevel.Args()
    with pytest.raises(ValidationError, match="above high"):
        RecordingLevel.Args(gain_db=(6, -6))
    with pytest.raises(ValidationError, match="silence"):
        RecordingLevel.Args(silence=(1.0, 0.5))
