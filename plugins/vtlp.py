"""Vocal tract length perturbation (VTLP, Jaitly & Hinton 2013) on the log-mel features of training batches.

A speaker's vocal tract length scales their formant frequencies; VTLP trains on features whose frequency axis
is warped by a random factor per utterance, so the model sees more "speakers" than the data has. For each
utterance of a training batch (with probability ``prob``) a factor ``alpha ~ U[low, high]`` is drawn and every
mel channel's centre frequency ``f`` takes the log energy the utterance had at the source frequency
``w(f)`` (linear interpolation between channels)::

    w(f) = f / alpha                                  f <= B,  B = boundary * nyquist * min(1, alpha)
    w(f) = the straight line from (B, B / alpha) to (nyquist, nyquist)   above B

the piecewise-linear warp of Kaldi's VTLN (so the band edges stay where they are). ``alpha > 1`` moves
formants up (a shorter vocal tract), ``alpha < 1`` down. Because it warps the cached features, it costs
next to nothing per step, unlike a waveform pitch shift, and it composes with the data's waveform
augmentation (speed perturbation changes pitch and tempo together) and with spec_augment (list it before
spec_augment so masks land on warped features). Factors are drawn from torch's global generator, so a resumed
run draws the same ones; evaluation and the exported graph never see it.

Spec::

    plugins:
      - {name: vtlp, low: 0.9, high: 1.1}
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, model_validator

from compressor.core.context import StageContext
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.core.strategy import Augmentation, Strategy
from compressor.data.features import FRONTENDS, SAMPLE_RATE, mel_filters
from compressor.spec import CheckContext


def channel_centres(frontend: str, num_bins: int) -> torch.Tensor:
    """The centre frequency (Hz) of each mel channel of ``frontend``: its filter's weighted mean frequency."""
    filters = mel_filters(frontend, num_bins)
    hz = torch.linspace(0, SAMPLE_RATE / 2, filters.shape[1], dtype=torch.float64)
    return (filters * hz).sum(1) / filters.sum(1).clamp_min(1e-12)


def warp_source(centres: torch.Tensor, alpha: float, boundary: float, nyquist: float) -> torch.Tensor:
    """Where each channel reads from: ``w(f)`` of the module docstring at the channel centres ``f``."""
    b = boundary * nyquist * min(1.0, alpha)
    low = centres / alpha
    slope = (nyquist - b / alpha) / (nyquist - b)
    high = b / alpha + (centres - b) * slope
    return torch.where(centres <= b, low, high)


def warp_features(x: torch.Tensor, centres: torch.Tensor, alpha: float, boundary: float = 0.85,
                  nyquist: float = SAMPLE_RATE / 2) -> torch.Tensor:
    """Warp (..., F) log-mel features along F by ``alpha`` (identity at 1)."""
    src = warp_source(centres, alpha, boundary, nyquist)
    # fractional channel index of each source frequency (centres increase monotonically)
    pos = torch.searchsorted(centres, src.clamp(centres[0], centres[-1]))
    lo = (pos - 1).clamp(0, len(centres) - 2)
    span = (centres[lo + 1] - centres[lo]).clamp_min(1e-9)
    frac = ((src.clamp(centres[0], centres[-1]) - centres[lo]) / span).clamp(0, 1).to(x.dtype).to(x.device)
    lo, hi = lo.to(x.device), (lo + 1).to(x.device)
    return x[..., lo] * (1 - frac) + x[..., hi] * frac


class VTLP(Strategy):
    """Vocal tract length perturbation: a random frequency warp of each training utterance's mel features."""

    needs_teacher = False  # acts on the trained model's own inputs: kept when the student trains alone

    name = "vtlp"

    class Args(Args):
        low: float = Field(default=0.9, gt=0.5, lt=2.0, description="smallest warp factor alpha")
        high: float = Field(default=1.1, gt=0.5, lt=2.0, description="largest warp factor alpha")
        prob: float = Field(default=1.0, ge=0, le=1, description="probability that an utterance is warped")
        boundary: float = Field(default=0.85, gt=0, lt=1, description="where the warp turns to keep Nyquist "
                                                                       "fixed, as a fraction of Nyquist")
        key: str = Field(default="features", description="batch key of the (B, T, F) log-mel features")
        lengths_key: str = Field(default="feature_lengths", description="batch key of the frame counts")

        @model_validator(mode="after")
        def _range(self) -> VTLP.Args:
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) is above high ({self.high})")
            if self.low == self.high == 1.0 or self.prob == 0:
                raise ValueError("alpha is always 1 (or prob is 0): vtlp would do nothing")
            return self

    def __init__(self, args: Args) -> None:
        super().__init__(args)
        self.centres: torch.Tensor | None = None

    @classmethod
    def augments(cls, args: Args) -> Augmentation:
        return Augmentation(keys=frozenset({args.key}))

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        info = check.data_info()
        frontend = info.get("frontend")
        if frontend is not None and frontend not in FRONTENDS:
            raise check.error(f"vtlp warps log-mel features; this data's front end '{frontend}' is not one of "
                              f"{', '.join(FRONTENDS)}")
        check.require_batch_keys(args, "key", "lengths_key")

    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        info = ctx.data.info
        self.centres = channel_centres(str(info.get("frontend", FRONTENDS[0])), int(info.get("feature_dim", 80)))

    @hookimpl
    def compressor_transform_batch(self, ctx: StageContext, batch: dict[str, Any]) -> None:
        args = self.args
        assert self.centres is not None
        x = batch[args.key]
        if x.shape[-1] != len(self.centres):
            raise ValueError(f"vtlp: features have {x.shape[-1]} channels, the front end {len(self.centres)}")
        lengths = batch[args.lengths_key]
        out = x.clone()
        total = 0.0
        for i in range(x.shape[0]):
            warp = float(torch.rand(1)) < args.prob
            alpha = args.low + (args.high - args.low) * float(torch.rand(1)) if warp else 1.0
            n = int(lengths[i])
            if warp and n > 0 and alpha != 1.0:
                out[i, :n] = warp_features(x[i, :n], self.centres, alpha, args.boundary)
            total += alpha
        batch[args.key] = out
        ctx.log_scalar("vtlp_alpha", total / max(1, x.shape[0]))


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", VTLP.name, VTLP)
