"""VTLP: the frequency warp moves spectral peaks the way a vocal tract length change moves formants, keeps the band
edges, leaves padding and alpha = 1 untouched, and draws its factors from the global generator."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from support.plugin_ctx import build_strategy, logmel_ctx

from plugins.vtlp import VTLP, channel_centres, warp_features, warp_source


def _peak_features(channel: int, frames: int = 5) -> torch.Tensor:
    x = torch.full((frames, 80), -10.0)
    x[:, channel] = 0.0
    return x


def test_alpha_one_is_the_identity_and_peaks_move_with_alpha() -> None:
    centres = channel_centres("nemo", 80)
    assert (centres[1:] > centres[:-1]).all()
    x = torch.randn(7, 80)
    assert torch.allclose(warp_features(x, centres, 1.0), x, atol=1e-6)
    peak = _peak_features(30)
    up = int(warp_features(peak, centres, 1.15)[0].argmax())
    down = int(warp_features(peak, centres, 0.85)[0].argmax())
    assert down < 30 < up
    # the peak lands where its frequency times alpha is (within a channel)
    target = float(centres[30]) * 1.15
    assert abs(float(centres[up]) - target) <= float(centres[up + 1] - centres[up - 1])
    # the warp is continuous and increasing, and keeps the band edges (0 and Nyquist) where they are
    grid = torch.linspace(0, 8000, 801, dtype=torch.float64)
    for alpha in (0.85, 1.15):
        src = warp_source(grid, alpha, 0.85, 8000.0)
        assert float(src[0]) == 0.0 and float(src[-1]) == pytest.approx(8000.0)
        assert (src[1:] > src[:-1]).all()
        assert float((src[1:] - src[:-1]).max()) < 3 * 10 / min(alpha, 1.0)  # no jump at the turn


def test_plugin_warps_real_frames_only_and_is_seeded() -> None:
    ctx, data = logmel_ctx([30, 12, 20])
    vtlp = build_strategy("vtlp", low=0.8, high=1.2)
    vtlp.compressor_prepare_models(ctx)
    batch = data.collate([data.dataset("train")[i] for i in range(3)])
    padded = batch["features"].clone()

    def run(seed: int) -> torch.Tensor:
        b = dict(batch, features=padded.clone())
        torch.manual_seed(seed)
        vtlp.compressor_transform_batch(ctx, b)
        return b["features"]

    out = run(0)
    assert torch.equal(out, run(0))
    assert not torch.equal(out, run(1))
    for i, n in enumerate(batch["feature_lengths"].tolist()):
        assert torch.equal(out[i, n:], padded[i, n:])  # padding untouched
        assert not torch.allclose(out[i, :n], padded[i, :n])
    assert 0.8 <= ctx.scalars["vtlp_alpha"] <= 1.2


def test_prob_zero_like_arguments_are_refused() -> None:
    with pytest.raises(ValidationError, match="above high"):
        VTLP.Args(low=1.1, high=0.9)
    with pytest.raises(ValidationError, match="nothing"):
        VTLP.Args(low=1.0, high=1.0)
    with pytest.raises(ValidationError, match="nothing"):
        VTLP.Args(prob=0.0)
