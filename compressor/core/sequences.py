"""Padded sequences in batches: valid lengths, masks, pooling, per-utterance views, and probing a model.

Models take a batch dict and return a dict of tensors; many of those tensors (and the outputs of modules
inside a model) are padded sequences. Strategies that pool, mask or compare them need to know which steps are
real. The rule, in order (see :func:`valid_lengths`):

1. ``lengths: none`` -- every step is real (inputs without padding);
2. ``lengths: <batch key>`` -- that batch entry, clamped to the sequence's length;
3. ``lengths: auto`` -- the model's own ``sequence_lengths(batch, steps)`` when it declares one (a text model
   counts its tokens); otherwise ``batch["feature_lengths"]`` scaled to the sequence's length
   ``ceil(L * steps / T_features)`` (exact when the sequence has the features' frame rate; one frame of slack
   after subsampling).

Padded sequence keys of a batch pair with their lengths by name: ``features`` / ``feature_lengths``,
``tokens`` / ``token_lengths``, ``text_ids`` / ``text_id_lengths`` (``K`` pairs with ``K_lengths`` or, for a
plural ``K``, ``K minus s`` + ``_lengths``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from torch import nn

from compressor.core.forward_hooks import ForwardHooks
from compressor.core.task import batch_size

Layout = Literal["btc", "bct", "tbc"]
Pooling = Literal["none", "cls", "mean", "max"]


class LengthsUnknown(ValueError):
    """The valid lengths of a sequence cannot be found (no rule of :func:`valid_lengths` applies)."""


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def length_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps) boolean: True at real steps."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def scale_lengths(lengths: torch.Tensor, from_steps: int, to_steps: int) -> torch.Tensor:
    """Lengths measured on ``from_steps`` frames, on a sequence of ``to_steps`` frames: ceil(L * to / from)."""
    if from_steps == to_steps:
        return lengths.clamp(max=to_steps)
    scaled = torch.div(lengths * to_steps + from_steps - 1, from_steps, rounding_mode="floor")
    return scaled.clamp(min=1, max=to_steps)


def valid_lengths(model: nn.Module, batch: dict[str, Any], steps: int, how: str = "auto") -> torch.Tensor | None:
    """Real steps per utterance of a sequence of ``steps`` steps that ``model`` computed (module docstring)."""
    if how == "none":
        return None
    if how != "auto":
        if how not in batch:
            raise LengthsUnknown(f"the batch has no '{how}' (keys: {', '.join(batch)})")
        return torch.as_tensor(batch[how]).clamp(max=steps)
    fn = getattr(unwrap(model), "sequence_lengths", None)
    if fn is not None:
        return fn(batch, steps)
    if "feature_lengths" in batch and isinstance(batch.get("features"), torch.Tensor):
        return scale_lengths(batch["feature_lengths"], int(batch["features"].shape[1]), steps)
    raise LengthsUnknown("the model declares no sequence_lengths and the batch has no feature_lengths")


def declares_lengths(model: nn.Module) -> bool:
    return hasattr(unwrap(model), "sequence_lengths")


def to_btc(x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """A (batch, time, channels) view of a 3-D sequence tensor in ``layout``."""
    if x.dim() != 3:
        raise ValueError(f"expected a 3-D sequence tensor (layout {layout}), got shape {tuple(x.shape)}")
    if layout == "bct":
        return x.transpose(1, 2)
    if layout == "tbc":
        return x.transpose(0, 1)
    return x


def from_btc(x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Inverse of :func:`to_btc`."""
    return to_btc(x, layout)  # each layout's swap is its own inverse


def pool(x: torch.Tensor, lengths: torch.Tensor | None, how: Pooling) -> torch.Tensor:
    """(B, T, D) -> (B, D) over the real steps: ``cls`` (first step), ``mean`` or ``max``."""
    if how == "cls":
        return x[:, 0]
    if how not in ("mean", "max"):
        raise ValueError(f"unknown pooling '{how}'")
    if lengths is None:
        return x.mean(1) if how == "mean" else x.max(1).values
    mask = length_mask(lengths.to(x.device), x.shape[1])[..., None]
    if how == "mean":
        return (x * mask).sum(1) / mask.sum(1).clamp_min(1).to(x.dtype)
    return x.masked_fill(~mask, float("-inf")).max(1).values


def lengths_key(key: str, batch: dict[str, Any]) -> str | None:
    """The batch key holding the lengths of padded sequence ``key`` (module docstring), if present."""
    for cand in (f"{key}_lengths", f"{key[:-1]}_lengths" if key.endswith("s") else None):
        if cand is not None and cand in batch:
            return cand
    return None


def split_batch(batch: dict[str, Any], keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One batch per utterance: row ``i`` of every per-utterance entry, padded sequences cut to their length.

    ``keys`` restricts the result to those entries (plus their lengths and ``ids``). Entries that are not
    per-utterance (a string, a scalar) are shared.
    """
    n = batch_size(batch)
    wanted = set(batch) if keys is None else {k for k in keys if k in batch}
    for k in list(wanted):
        lk = lengths_key(k, batch)
        if lk is not None:
            wanted.add(lk)
    wanted |= {k for k in ("ids",) if k in batch}
    wanted |= {k for k, v in batch.items() if not isinstance(v, (torch.Tensor, list, tuple))}
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key in wanted:
        value = batch[key]
        lk = lengths_key(key, batch)
        for i in range(n):
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
                row = value[i:i + 1]
                if lk is not None and row.dim() > 1:
                    row = row[:, : int(batch[lk][i])]
                out[i][key] = row
            elif isinstance(value, (list, tuple)) and len(value) == n:
                out[i][key] = [value[i]]
            else:
                out[i][key] = value
    return out


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode inside the block, each restored to its own mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def module_output(out: Any, index: int | None) -> torch.Tensor:
    """A module's output tensor: element ``index`` of a tuple (an LSTM's ``(output, state)``: 0)."""
    if isinstance(out, (tuple, list)):
        out = out[0 if index is None else index]
    elif index not in (None, 0):
        raise ValueError(f"index {index} given, but the module returns a single tensor")
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the module output is a {type(out).__name__}, not a tensor")
    return out


@torch.no_grad()
def probe(model: nn.Module, batch: dict[str, Any], modules: Sequence[str] = (), forward: Any = None
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``model`` once on ``batch`` (eval mode, no gradients, the random streams untouched) and return its
    outputs and the raw outputs of the named ``modules`` (to learn widths and lengths before training)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with ForwardHooks(model) as hooks:
        captured = hooks.capture(modules)
        with torch.random.fork_rng(devices=devices), eval_mode(model):
            out = forward(model, batch) if forward is not None else model(batch)
    return out, captured


def sample_batch(data: Any, device: torch.device, split: str = "train") -> dict[str, Any]:
    """The shortest and the longest utterance of a split as one batch (for probing shapes and lengths)."""
    from compressor.core.task import to_device

    ds = data.dataset(split)
    lengths = getattr(ds, "lengths", None)
    if lengths is None:
        lengths = [int(ds[i]["features"].shape[0]) if "features" in ds[i] else 0 for i in range(len(ds))]
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    idx = [order[0]] if len(order) == 1 else [order[0], order[-1]]
    return to_device(data.collate([ds[i] for i in idx]), device)


def expected_span_fraction(p: float, span: int, length: int) -> float:
    """Expected fraction of a length-``length`` sequence covered by spans of ``span`` steps starting at each
    step with probability ``p`` and cut at the end (overlap allowed): mean_t 1 - (1-p)^min(t+1, span).

    For small p this is close to the nominal ``p * span`` (seed 000's maximum masking ratio), which it never
    exceeds."""
    if length <= 0:
        return 0.0
    return sum(1.0 - (1.0 - p) ** min(t + 1, span) for t in range(length)) / length


def span_mask(batch: int, steps: int, p: float, span: int, lengths: torch.Tensor | None = None,
              allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, steps) boolean mask: every real step starts a span with probability ``p`` and the ``span``
    steps from each start are masked (overlap allowed), never past an utterance's length (SpanBERT style,
    seed 000 Sec. 3.3). ``allowed`` (B, steps) excludes steps (special tokens) from starting and from being
    masked. Drawn from torch's global CPU generator, so a resumed run draws the same masks."""
    starts = torch.rand(batch, steps) < p
    valid = torch.ones(batch, steps, dtype=torch.bool)
    if lengths is not None:
        valid = length_mask(lengths.detach().cpu(), steps)
    if allowed is not None:
        valid = valid & allowed.detach().cpu()
    starts &= valid
    if span > 1:
        padded = torch.nn.functional.pad(starts.float()[:, None], (span - 1, 0))
        mask = torch.nn.functional.max_pool1d(padded, span, stride=1)[:, 0] > 0
    else:
        mask = starts
    return mask & valid


def ceil_div(a: int, b: int) -> int:
    return int(math.ceil(a / b))
