"""Span masking of discrete input tokens (seed 000 Sec. 3.3, SpanBERT style) for models that read tokens.

For the token ids ``x`` (B, N) a model reads (discrete speech units, or text word pieces), during training::

    every real, non-special position starts a span with probability p_d; the M_d positions from each start
    are replaced by the mask id (overlap allowed; never past a sequence's end, never a special token)

The expected masked fraction is 1 - (1 - p_d)^M_d per position away from the ends, at most the nominal
``p_d * M_d`` (seed 000's maximum masking ratio, 0.1-0.2 there). The mask id is the one the model declares
(``mask_token_id``; a transformers text model declares its tokenizer's [MASK]) or ``mask_id``. Draws come
from torch's global generator, so a resumed run repeats the masks; the masked fraction of each step is logged
as ``tokens_masked``.

What a token model declares (all optional except the mask id): ``token_key`` (the batch key of its ids,
default ``tokens``), ``mask_token_id``, ``special_token_ids`` (never masked), ``pad_token_id``, and
``tokenize_batch(batch)`` to put its ids into the batch first when it reads raw text.

Spec::

    plugins:
      - {name: token_span_masking, model: student, prob: 0.02, span: 5}
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from compressor.core.context import StageContext
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.core.sequences import lengths_key, span_mask, unwrap
from compressor.core.strategy import Augmentation, Strategy
from compressor.spec import CheckContext


class TokenSpanMasking(Strategy):
    """Replace spans of a model's input tokens by its mask id in training batches."""

    needs_teacher = False  # acts on the trained model's own inputs or layers: kept when it trains alone

    name = "token_span_masking"

    class Args(Args):
        model: str = Field(default="student", description="the model reading the tokens (declares the mask id)")
        key: str | None = Field(default=None, description="batch key of the token ids (default: the model's "
                                "token_key, else 'tokens')")
        prob: float = Field(default=0.02, ge=0, le=1, description="p_d: probability a position starts a span")
        span: int = Field(default=5, ge=1, description="M_d: tokens per span")
        mask_id: int | None = Field(default=None, ge=0, description="default: the model's mask_token_id")

    @classmethod
    def augments(cls, args: Args) -> Augmentation:
        return Augmentation(keys=frozenset({args.key} if args.key else ()), models=frozenset({args.model}))

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        check.require_model(args.model)
        model = check.try_build_model(args.model)
        if model is None:  # checked when the run builds it
            return
        if args.mask_id is None and not isinstance(getattr(model, "mask_token_id", None), int):
            raise check.error(f"model '{args.model}' declares no mask token (mask_token_id): set mask_id", "model")
        key = args.key or getattr(model, "token_key", "tokens")
        keys = check.data_info().get("batch_keys")
        if keys is not None and key not in keys and not hasattr(model, "tokenize_batch"):
            raise check.error(f"the batches carry no '{key}' for '{args.model}' to read (keys: "
                              f"{', '.join(keys)})", "key")
        limit = getattr(model, "max_length", None)
        if isinstance(limit, int) and args.span > limit:
            raise check.error(f"span {args.span} exceeds the {limit} tokens '{args.model}' reads at most", "span")
        vocab = getattr(model, "vocab_size", None)
        if args.mask_id is not None and isinstance(vocab, int) and args.mask_id >= vocab:
            raise check.error(f"mask_id {args.mask_id} is outside the model's vocabulary of {vocab}", "mask_id")

    @hookimpl
    def compressor_transform_batch(self, ctx: StageContext, batch: dict[str, Any]) -> None:
        args = self.args
        model = unwrap(ctx.model(args.model))
        if hasattr(model, "tokenize_batch"):
            model.tokenize_batch(batch)
        key = args.key or getattr(model, "token_key", "tokens")
        ids = batch[key]
        lk = getattr(model, "token_length_key", None) or lengths_key(key, batch)
        lengths = batch[lk] if lk is not None and lk in batch else None
        special = set(getattr(model, "special_token_ids", []) or [])
        for attr in ("pad_token_id", "mask_token_id"):
            if isinstance(getattr(model, attr, None), int):
                special.add(int(getattr(model, attr)))
        allowed = ~torch.isin(ids.cpu(), torch.tensor(sorted(special), dtype=ids.dtype)) if special else None
        mask = span_mask(ids.shape[0], ids.shape[1], args.prob, args.span, lengths, allowed)
        mask_id = args.mask_id if args.mask_id is not None else int(model.mask_token_id)
        batch[key] = ids.masked_fill(mask.to(ids.device), mask_id)
        real = torch.ones_like(mask) if allowed is None else allowed.clone()
        if lengths is not None:
            real &= torch.arange(ids.shape[1])[None, :] < lengths.cpu()[:, None]
        ctx.log_scalar("tokens_masked", float(mask.sum()) / max(1, int(real.sum())))


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", TokenSpanMasking.name, TokenSpanMasking)
