"""SpecAugment (Park et al. 2019) on the input features of training batches.

For each utterance of a training batch, within its real frames only (padding is never touched)::

    optional time warp: a point c in the utterance moves to c + w, w ~ U[-W, W]; both sides resampled linearly
    freq_masks x  frequency mask [f0, f0 + f),  f ~ U[0, F),  f0 ~ U[0, n_mels - f)
    time_masks x  time mask      [t0, t0 + t),  t ~ U[0, T'), t0 ~ U[0, L - t),  T' = min(T, p * L) with p the
                                                adaptive ``time_width_fraction`` (T' = T without it)

Masks are drawn with torchaudio's ``mask_along_axis`` (on each utterance's own frames, so lengths are
respected) from torch's global generator: a resumed run draws the same masks. Masked cells take the data's
global mean of that frequency channel (``mask_value: mean``; after the model's CMVN that is 0, which is what
SpecAugment writes on normalised features), 0 (``zero``) or a given number. The fraction of real
time-frequency cells masked is logged every step as ``spec_augment_masked``. Only training batches are
augmented: evaluation and the exported graph never see it.

Spec (seed 000 uses it without time warp on its acoustic-model input; LibriSpeech's LD policy is F=27, 2
frequency masks, T=100, p=0.2 and 2 time masks)::

    plugins:
      - {name: spec_augment, freq_masks: 2, freq_width: 27, time_masks: 2, time_width: 40,
         time_width_fraction: 0.2, time_warp: 0}
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torchaudio.functional import mask_along_axis

from compressor.core.context import StageContext
from compressor.core.errors import UserError
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.core.strategy import Augmentation, Strategy
from compressor.spec import CheckContext


def time_warp(x: torch.Tensor, window: int) -> torch.Tensor:
    """Warp (F, L) features in time: a random point c moves to c + w, |w| <= window (global generator)."""
    length = x.shape[1]
    if window < 1 or length < 2 * window + 3:
        return x
    c = int(torch.randint(window + 1, length - window, (1,)))
    w = int(torch.randint(-window, window + 1, (1,)))
    left = F.interpolate(x[None, :, :c], size=c + w, mode="linear", align_corners=False)
    right = F.interpolate(x[None, :, c:], size=length - c - w, mode="linear", align_corners=False)
    return torch.cat([left, right], dim=-1)[0]


def augment_utterance(x: torch.Tensor, fill: torch.Tensor, args: Any) -> tuple[torch.Tensor, int]:
    """SpecAugment one utterance's real frames (L, F); returns the result and the number of masked cells."""
    u = x.transpose(0, 1)  # (F, L): torchaudio's (freq, time)
    if args.time_warp:
        u = time_warp(u, args.time_warp)
    keep = torch.ones(u.shape, dtype=torch.float32)
    for _ in range(args.freq_masks):
        keep = mask_along_axis(keep, args.freq_width, 0.0, axis=0)
    p = args.time_width_fraction if args.time_width_fraction is not None else 1.0
    for _ in range(args.time_masks):
        keep = mask_along_axis(keep, args.time_width, 0.0, axis=1, p=p)
    masked = keep.to(u.device) < 0.5
    u = torch.where(masked, fill[:, None].to(u.dtype), u)
    return u.transpose(0, 1), int(masked.sum())


class SpecAugment(Strategy):
    """Time warp, frequency masks and time masks on training features, within each utterance's frames."""

    needs_teacher = False  # acts on the trained model's own inputs or layers: kept when it trains alone

    name = "spec_augment"

    class Args(Args):
        freq_masks: int = Field(default=2, ge=0, description="frequency masks per utterance")
        freq_width: int = Field(default=27, ge=1, description="F: a frequency mask is up to F-1 channels wide")
        time_masks: int = Field(default=2, ge=0, description="time masks per utterance")
        time_width: int = Field(default=40, ge=1, description="T: a time mask is up to T-1 frames wide")
        time_width_fraction: float | None = Field(
            default=None, gt=0, le=1, description="adaptive width: at most this fraction of the utterance")
        time_warp: int = Field(default=0, ge=0, description="W: warp distance in frames (0 = no time warp)")
        mask_value: Literal["mean", "zero"] | float = Field(
            default="mean", description="mean: the data's per-channel mean (0 after CMVN); zero; or a number")
        key: str = Field(default="features", description="batch key of the (B, T, F) features")
        lengths_key: str = Field(default="feature_lengths", description="batch key of the frame counts")

        @model_validator(mode="after")
        def _does_something(self) -> SpecAugment.Args:
            if self.freq_masks == 0 and self.time_masks == 0 and self.time_warp == 0:
                raise ValueError("no masks and no time warp: spec_augment would do nothing")
            return self

    def __init__(self, args: Args) -> None:
        super().__init__(args)
        self.fill: torch.Tensor | None = None

    @classmethod
    def augments(cls, args: Args) -> Augmentation:
        return Augmentation(keys=frozenset({args.key}))

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        info = check.data_info()
        dim = info.get("feature_dim")
        if dim is not None and args.freq_masks and args.freq_width > int(dim):
            raise check.error(f"freq_width {args.freq_width} exceeds the data's {dim} feature channels",
                              "freq_width")
        shortest = info.get("min_frames")
        if shortest is not None and args.time_masks and args.time_width_fraction is None and \
                args.time_width >= int(shortest):
            raise check.error(f"time_width {args.time_width} is not below the shortest utterance ({shortest} "
                              "frames): lower it or set time_width_fraction", "time_width")
        check.require_batch_keys(args, "key", "lengths_key")

    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        args = self.args
        ds = ctx.data.dataset("train")
        lengths = getattr(ds, "lengths", None)
        if lengths is None:
            lengths = [int(ds[i][args.key].shape[0]) for i in range(len(ds))]
        shortest = min(lengths) if len(lengths) else 0
        if args.time_masks and args.time_width_fraction is None and args.time_width >= shortest:
            raise UserError(f"spec_augment: time_width {args.time_width} is not below the shortest training "
                            f"utterance ({shortest} frames): lower it or set time_width_fraction")
        mean = ctx.data.info.get("feature_mean")
        self.fill = None
        if args.mask_value == "mean" and mean is not None:
            self.fill = torch.as_tensor(mean, dtype=torch.float32)
        elif args.mask_value == "zero":
            self.fill = torch.zeros(1)
        elif not isinstance(args.mask_value, str):
            self.fill = torch.full((1,), float(args.mask_value))

    @hookimpl
    def compressor_transform_batch(self, ctx: StageContext, batch: dict[str, Any]) -> None:
        args = self.args
        x = batch[args.key]
        lengths = batch[args.lengths_key]
        out = x.clone()
        masked = valid = 0
        dim = x.shape[-1]
        for i in range(x.shape[0]):
            n = int(lengths[i])
            if n == 0:
                continue
            frames = x[i, :n]
            fill = self.fill if self.fill is not None else frames.mean(0)  # no data mean: the utterance's
            if fill.numel() == 1:
                fill = fill.expand(dim)
            elif fill.numel() != dim:
                raise ValueError(f"the data's feature_mean has {fill.numel()} channels, the features {dim}")
            out[i, :n], m = augment_utterance(frames, fill.to(x.device), args)
            masked += m
            valid += n * dim
        batch[args.key] = out
        ctx.log_scalar("spec_augment_masked", masked / max(1, valid))


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", SpecAugment.name, SpecAugment)
