"""Masking of contextualised features (seed 000, Sec. 3.3): time and channel spans on a module's output.

On the output ``h`` (B, T, C) of a named module, during training forward passes only::

    time:     every real step starts a span with probability p_t; the M_t steps from each start are masked
    channels: every channel starts a span with probability p_c (per utterance); M_c channels from each start
    h[b, t, c] = mask_value  where (b, t) or (b, c) is masked and t is a real step of utterance b

Spans may overlap (as in SpanBERT), so the expected masked fraction is 1 - (1 - p)^M per step away from the
ends -- at most the nominal ``p * M`` that seed 000 calls the maximum masking ratio. Spans never reach into
padding. The masks are drawn from torch's global generator, so a resumed run repeats them. The masked
fraction of each training step is logged as ``hidden_masked``.

The mask is applied by a forward hook that exists only while the stage runs and acts only on training forward
passes: evaluation, later stages and the exported graph never see it.

Spec (seed 000's DA: ``p_t M_t, p_c M_c`` in 0.1-0.5, ``M`` in {5, 10})::

    plugins:
      - {name: hidden_masking, model: student, module: encoder, index: 0,
         time_prob: 0.02, time_span: 10, channel_prob: 0.02, channel_span: 10}
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from compressor.core.context import StageContext
from compressor.core.errors import UserError, did_you_mean
from compressor.core.forward_hooks import ForwardHooks
from compressor.core.hookspecs import hookimpl
from compressor.core.introspect import in_out_dims
from compressor.core.registry import Args, Registry
from compressor.core.sequences import (
    LengthsUnknown,
    from_btc,
    length_mask,
    module_output,
    probe,
    sample_batch,
    span_mask,
    to_btc,
    valid_lengths,
)
from compressor.core.strategy import Augmentation, Strategy
from compressor.spec import CheckContext


def mask_hidden(h: torch.Tensor, lengths: torch.Tensor | None, time_prob: float, time_span: int,
                channel_prob: float, channel_span: int, value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask time and channel spans of (B, T, C) ``h`` within its real steps; returns (masked h, the mask)."""
    b, t, c = h.shape
    valid = torch.ones(b, t, dtype=torch.bool) if lengths is None else length_mask(lengths.detach().cpu(), t)
    full = torch.zeros(b, t, c, dtype=torch.bool)
    if time_prob > 0:
        full |= span_mask(b, t, time_prob, time_span, lengths)[:, :, None]
    if channel_prob > 0:
        full |= span_mask(b, c, channel_prob, channel_span)[:, None, :]
    full &= valid[:, :, None]
    return h.masked_fill(full.to(h.device), value), full


class HiddenMasking(Strategy):
    """Time and channel span masking on a named module's output, in training forward passes only."""

    needs_teacher = False  # acts on the trained model's own inputs or layers: kept when it trains alone

    name = "hidden_masking"

    class Args(Args):
        model: str = Field(default="student", description="the model whose module output is masked")
        module: str = Field(description="named module whose output is masked")
        index: int | None = Field(default=None, ge=0, description="element of a tuple output (an LSTM's: 0)")
        layout: Literal["btc", "bct", "tbc"] = "btc"
        time_prob: float = Field(default=0.0, ge=0, le=1, description="p_t: probability a step starts a span")
        time_span: int = Field(default=10, ge=1, description="M_t: steps per time span")
        channel_prob: float = Field(default=0.0, ge=0, le=1, description="p_c: probability a channel starts one")
        channel_span: int = Field(default=10, ge=1, description="M_c: channels per channel span")
        mask_value: float = 0.0
        lengths: str = Field(default="auto", description="valid steps: auto | none | a batch key")

        @model_validator(mode="after")
        def _something(self) -> HiddenMasking.Args:
            if self.time_prob == 0 and self.channel_prob == 0:
                raise ValueError("time_prob and channel_prob are both 0: hidden_masking would do nothing")
            return self

    def __init__(self, args: Args) -> None:
        super().__init__(args)
        self._hooks: ForwardHooks | None = None
        self._ctx: StageContext | None = None
        self._batch: dict[str, Any] | None = None
        self._counts = [0, 0]

    @classmethod
    def augments(cls, args: Args) -> Augmentation:
        return Augmentation(models=frozenset({args.model}))

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        check.require_model(args.model)
        model = check.try_build_model(args.model)
        if model is None:  # checked when the run builds it
            return
        modules = dict(model.named_modules())
        if args.module not in modules or not args.module:
            raise check.error(f"no module '{args.module}' in '{args.model}'"
                              f"{did_you_mean(args.module, [n for n in modules if n])}", "module")
        if args.channel_prob > 0:
            width = in_out_dims(modules[args.module])[1]
            if width is not None and args.channel_span > width:
                raise check.error(f"channel_span {args.channel_span} exceeds the {width} channels of "
                                  f"'{args.module}'", "channel_span")

    def _mask(self, module: nn.Module, output: Any) -> Any:
        ctx, args = self._ctx, self.args
        if ctx is None or not ctx.training or self._batch is None:
            return None
        x = module_output(output, args.index)
        h = to_btc(x, args.layout)
        try:
            lengths = valid_lengths(ctx.model(args.model), self._batch, int(h.shape[1]), args.lengths)
        except LengthsUnknown as e:
            raise UserError(f"hidden_masking: the valid lengths of '{args.module}' are unknown: {e}") from None
        h, mask = mask_hidden(h, lengths, args.time_prob, args.time_span, args.channel_prob, args.channel_span,
                              args.mask_value)
        real = h.shape[0] * h.shape[1] if lengths is None else int(lengths.sum())
        self._counts[0] += int(mask.sum())
        self._counts[1] += real * h.shape[2]
        x = from_btc(h, args.layout)
        if isinstance(output, tuple):
            return tuple(x if i == (args.index or 0) else o for i, o in enumerate(output))
        return x

    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        args = self.args
        model = ctx.model(args.model)
        # Probe the shortest training utterance: the spans must fit its sequence at this module.
        batch = sample_batch(ctx.data, ctx.device)
        _, cap = probe(model, batch, [args.module], forward=ctx.task.forward)
        h = to_btc(module_output(cap[args.module], args.index), args.layout)
        try:
            lengths = valid_lengths(model, batch, int(h.shape[1]), args.lengths)
        except LengthsUnknown as e:
            raise UserError(f"hidden_masking: the valid lengths of '{args.module}' are unknown: {e}") from None
        shortest = int(h.shape[1]) if lengths is None else int(lengths.min())
        if args.time_prob > 0 and args.time_span > shortest:
            raise UserError(f"hidden_masking: time_span {args.time_span} exceeds the shortest training sequence "
                            f"at '{args.module}' ({shortest} steps)")
        if args.channel_prob > 0 and args.channel_span > h.shape[2]:
            raise UserError(f"hidden_masking: channel_span {args.channel_span} exceeds the {h.shape[2]} "
                            f"channels of '{args.module}'")
        self._ctx = ctx
        self._hooks = ForwardHooks(model)
        self._hooks.replace(args.module, self._mask)

    @hookimpl
    def compressor_transform_batch(self, ctx: StageContext, batch: dict[str, Any]) -> None:
        self._batch = batch

    @hookimpl
    def compressor_step_start(self, ctx: StageContext) -> None:
        self._counts = [0, 0]

    @hookimpl
    def compressor_loss_terms(self, ctx: StageContext) -> None:
        if self._counts[1]:
            ctx.log_scalar("hidden_masked", self._counts[0] / self._counts[1])

    @hookimpl
    def compressor_finalize_student(self, ctx: StageContext) -> None:
        if self._hooks is not None:
            self._hooks.remove()
        self._hooks, self._ctx, self._batch = None, None, None


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", HiddenMasking.name, HiddenMasking)
