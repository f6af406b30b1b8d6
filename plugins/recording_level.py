"""Recording level: a random gain and silence around the speech, applied to the log-mel features of training
batches.

Synthesised corpora come at one level and start on their first sound; a microphone hears speech 20 dB quieter
or louder than that and silence before and after it. A model that never heard either fails on both (the headline's
models went from about 70% to above 95% WER on their test audio 20 dB quieter, `benchmarks/checks/conditions.py`).
For each utterance of a training batch (each part with probability ``prob``)::

    silence   s_before, s_after ~ U[silence]   seconds of frames drawn at random from the utterance's own
                                               ``floor_frames`` quietest frames (its noise floor), put before
                                               and after its real frames (the lengths grow by as many)
    gain      g ~ U[gain_db]                   x' = max(x + g ln(10) / 10, log(eps)) on every real frame
                                               (channels at log(eps) stay there)

The gain is exact for the log power-mel features of every front end here (``log(max(energy, eps))``, no
dither): scaling the waveform by ``10^(g/20)`` scales every energy by ``10^(g/10)``; only channels at the floor,
whose energy is unknown, stay there. Working on the cached features costs next to nothing per step, where the
same augmentation on the waveform (the data's ``augment: {gain_db, silence}``) recomputes every utterance's
features each step. Draws come from torch's global generator, so a resumed run draws the same ones; evaluation
and the exported graph never see it. List it before ``vtlp`` and ``spec_augment``, so they warp and mask the
padded utterance. It makes the task harder: in the headline's 1,500 steps a student trained alone with it
collapsed to almost one transcript for everything (``benchmarks/checks/results/conditions/experiments.md``);
give it to long trainings.

Spec::

    plugins:
      - {name: recording_level, gain_db: [-30, 12], silence: [0, 0.8]}
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field, model_validator

from compressor.core.context import StageContext
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.core.strategy import Augmentation, Strategy
from compressor.data.features import FRAME_SHIFT, SAMPLE_RATE
from compressor.spec import CheckContext

LOG_FLOOR = math.log(torch.finfo(torch.float32).eps)  # the front ends' log(max(energy, eps))
FRAMES_PER_SECOND = SAMPLE_RATE / FRAME_SHIFT


def with_gain(x: torch.Tensor, gain_db: float) -> torch.Tensor:
    """Log power-mel features ``x`` of a waveform scaled by ``10^(gain_db/20)`` (channels at the floor stay)."""
    floored = x <= LOG_FLOOR + 1e-4
    return (x + gain_db * math.log(10) / 10).clamp_min(LOG_FLOOR).masked_fill(floored, LOG_FLOOR)


def with_silence(x: torch.Tensor, before: int, after: int, floor_frames: int) -> torch.Tensor:
    """``x`` (T, F) with ``before`` and ``after`` frames drawn from its ``floor_frames`` quietest frames around it."""
    energy = x.float().exp().sum(-1)
    quiet = x[energy.argsort()[: max(1, min(floor_frames, x.shape[0]))]]
    pick = torch.randint(quiet.shape[0], (before + after,))
    pad = quiet[pick]
    return torch.cat([pad[:before], x, pad[before:]])


class RecordingLevel(Strategy):
    """A random gain and silence around the speech, on each training utterance's log-mel features."""

    needs_teacher = False  # acts on the trained model's own inputs: kept when the student trains alone

    name = "recording_level"

    class Args(Args):
        gain_db: tuple[float, float] | None = Field(default=None, description="gain range in dB (a waveform "
                                                    "scaled by 10^(g/20)), e.g. [-30, 12]")
        silence: tuple[float, float] | None = Field(default=None, description="seconds of silence added before "
                                                    "and after the speech, each drawn from this range")
        prob: float = Field(default=1.0, ge=0, le=1, description="probability of each part, per utterance")
        floor_frames: int = Field(default=10, ge=1, description="the utterance's quietest frames that silence "
                                                                "is drawn from")
        key: str = Field(default="features", description="batch key of the (B, T, F) log-mel features")
        lengths_key: str = Field(default="feature_lengths", description="batch key of the frame counts")

        @model_validator(mode="after")
        def _ranges(self) -> RecordingLevel.Args:
            if self.gain_db is None and self.silence is None:
                raise ValueError("give gain_db, silence or both: recording_level would do nothing")
            if self.gain_db is not None and self.gain_db[0] > self.gain_db[1]:
                raise ValueError(f"gain_db: low ({self.gain_db[0]}) is above high ({self.gain_db[1]})")
            if self.silence is not None and not 0 <= self.silence[0] <= self.silence[1] <= 30:
                raise ValueError(f"silence must be [low, high] seconds with 0 <= low <= high <= 30, "
                                 f"not {list(self.silence)}")
            return self

    @classmethod
    def augments(cls, args: Args) -> Augmentation:
        return Augmentation(keys=frozenset({args.key, args.lengths_key}))

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        info = check.data_info()
        if info.get("normalize_type"):
            raise check.error(f"recording_level changes the level of log-mel features; this data normalises "
                              f"each utterance's features ({info['normalize_type']}), which undoes a gain")
        check.require_batch_keys(args, "key", "lengths_key")

    def _seconds(self) -> float:
        lo, hi = self.args.silence  # type: ignore[misc]
        return lo + (hi - lo) * float(torch.rand(1))

    @hookimpl
    def compressor_transform_batch(self, ctx: StageContext, batch: dict[str, Any]) -> None:
        args = self.args
        x, lengths = batch[args.key], batch[args.lengths_key]
        rows: list[torch.Tensor] = []
        gains = added = 0.0
        for i in range(x.shape[0]):
            n = int(lengths[i])
            row = x[i, :n]
            if args.silence is not None and float(torch.rand(1)) < args.prob and n > 0:
                before, after = (round(self._seconds() * FRAMES_PER_SECOND) for _ in range(2))
                row = with_silence(row, before, after, args.floor_frames)
                added += before + after
            if args.gain_db is not None and float(torch.rand(1)) < args.prob:
                g = args.gain_db[0] + (args.gain_db[1] - args.gain_db[0]) * float(torch.rand(1))
                row = with_gain(row, g)
                gains += g
            rows.append(row)
        new_lengths = torch.tensor([r.shape[0] for r in rows], dtype=lengths.dtype, device=lengths.device)
        out = x.new_zeros((x.shape[0], max(int(new_lengths.max()), 1) if rows else 0, x.shape[2]))
        for i, r in enumerate(rows):
            out[i, : r.shape[0]] = r
        batch[args.key], batch[args.lengths_key] = out, new_lengths
        ctx.log_scalar("recording_level_gain_db", gains / max(1, x.shape[0]))
        ctx.log_scalar("recording_level_silence_s", added / FRAMES_PER_SECOND / max(1, x.shape[0]))


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", RecordingLevel.name, RecordingLevel)
