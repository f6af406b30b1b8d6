"""Fit a unit model's k-means quantiser on the frames of the stage's training data (seed 000: vq-wav2vec's
k-means quantisation, one code per 10 ms frame), deterministically, cached like the corpora.

At the start of the stage (before anything trains), if the model's quantiser is not fitted yet (or ``refit``)::

    frames  = up to max_frames fbank frames of the training split, drawn with a generator seeded by ``seed``
    mean, std = their per-dimension mean and standard deviation (CMVN), x = (frames - mean) / std
    codebook = k-means++ initialisation, then ``iterations`` Lloyd steps on x (empty clusters take the
               points farthest from their centres)

The result is cached in ``$COMPRESSOR_CACHE/units/kmeans-<hash>.pt`` (hash of the frames used and the
settings; loaded back with ``weights_only=True``), so a second run, a resumed run and the other stages of a
benchmark reuse it; the codebook lives in the model's buffers and travels with its checkpoints. The fitted
quantiser's distortion and code usage are logged (``kmeans_distortion``, ``kmeans_codes_used``).

Spec::

    plugins:
      - {name: kmeans_units, model: student, max_frames: 60000, iterations: 20}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from compressor.core.context import StageContext
from compressor.core.errors import UserError, did_you_mean
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.core.sequences import unwrap
from compressor.core.strategy import Strategy
from compressor.spec import CheckContext
from compressor.teaching.teacher_cache import entry_checksum

CHUNK = 8192


def find_quantizer(model: torch.nn.Module) -> Any:
    """The model's k-means quantiser (``quantizer`` of the model or of its ``encoder``), or None."""
    from compressor.families.units.model import KMeansQuantizer

    for _, module in unwrap(model).named_modules():
        if isinstance(module, KMeansQuantizer):
            return module
    return None


def nearest(x: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index, squared distance) of each row's nearest centre, in chunks."""
    idx, dist = [], []
    c2 = (centres ** 2).sum(-1)
    for i in range(0, x.shape[0], CHUNK):
        part = x[i:i + CHUNK]
        d = (part ** 2).sum(-1, keepdim=True) - 2 * part @ centres.t() + c2
        v, j = d.min(-1)
        idx.append(j)
        dist.append(v.clamp_min(0))
    return torch.cat(idx), torch.cat(dist)


def kmeans(x: torch.Tensor, k: int, iterations: int, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """k-means++ then Lloyd on (N, D) ``x``; returns (centres (k, D), mean squared distortion)."""
    n = x.shape[0]
    centres = x[torch.randint(n, (1,), generator=generator)]
    _, d = nearest(x, centres)
    for _ in range(1, k):  # k-means++: next centre drawn with probability proportional to D^2
        j = torch.multinomial(d / d.sum() if d.sum() > 0 else torch.ones(n) / n, 1, generator=generator)
        centres = torch.cat([centres, x[j]])
        d = torch.minimum(d, nearest(x, x[j])[1])
    for _ in range(iterations):
        assign, d = nearest(x, centres)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = (counts == 0).nonzero().flatten()
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        if len(empty):
            far = torch.argsort(d, descending=True)[: len(empty)]
            centres[empty] = x[far]
    _, d = nearest(x, centres)
    return centres, float(d.mean())


class KMeansUnits(Strategy):
    """Fit the k-means quantiser of a unit model (vq_bert, vq_bert_ds2) on the stage's training frames."""

    needs_teacher = False  # acts on the trained model's own inputs or layers: kept when it trains alone

    name = "kmeans_units"
    fit_stats: dict[str, float] = {}

    class Args(Args):
        model: str = Field(default="student", description="the model whose quantiser is fitted")
        max_frames: int = Field(default=60_000, ge=16, le=5_000_000, description="frames drawn for k-means")
        iterations: int = Field(default=20, ge=1, le=1000, description="Lloyd iterations after k-means++")
        seed: int = Field(default=0, ge=0, description="seed of the frame draw and of k-means++")
        refit: bool = Field(default=False, description="fit again even if the quantiser is already fitted")
        split: str = "train"

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        names = check.model_names()
        if args.model not in names:
            raise check.error(f"no model named '{args.model}'{did_you_mean(args.model, names)}", "model")
        model = check.try_build_model(args.model)
        if model is not None and find_quantizer(model) is None:
            raise check.error(f"model '{args.model}' has no k-means quantiser (a vq_bert or vq_bert_ds2 has one)",
                              "model")
        if args.model not in check.stage.train:
            raise check.error(f"'{args.model}' is not trained in this stage: fit its quantiser in a stage that "
                              "trains it", "model")

    def _frames(self, ctx: StageContext) -> torch.Tensor:
        ds = ctx.data.dataset(self.args.split)
        lengths = [int(x) for x in getattr(ds, "lengths", None) or [ds[i]["features"].shape[0]
                                                                       for i in range(len(ds))]]
        total = sum(lengths)
        if total < 2:
            raise UserError(f"kmeans_units: the {self.args.split} split has no frames to fit on")
        g = torch.Generator().manual_seed(self.args.seed)
        take = min(total, self.args.max_frames)
        chosen = torch.randperm(total, generator=g)[:take].sort().values
        offsets = torch.tensor([0] + lengths).cumsum(0)
        utt = torch.searchsorted(offsets, chosen, right=True) - 1
        frames = []
        for i in utt.unique().tolist():
            rows = chosen[utt == i] - offsets[i]
            frames.append(ds[i]["features"].float()[rows])
        return torch.cat(frames)

    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        args = self.args
        q = find_quantizer(ctx.model(args.model))
        self.fit_stats = {}
        if bool(q.fitted) and not args.refit:
            return
        from compressor.data.cache import default_cache_dir

        frames = self._frames(ctx)
        k = q.codes
        if frames.shape[0] < k:
            raise UserError(f"kmeans_units: {frames.shape[0]} frames cannot make {k} codes (more data, or fewer "
                            "codes)")
        if frames.shape[1] != q.codebook.shape[1]:
            raise UserError(f"kmeans_units: the data's frames have {frames.shape[1]} dimensions, the quantiser "
                            f"{q.codebook.shape[1]}")
        h = hashlib.sha256(frames.numpy().tobytes())
        h.update(json.dumps({"k": k, "iterations": args.iterations, "seed": args.seed, "v": 1}).encode())
        path = default_cache_dir() / "units" / f"kmeans-{h.hexdigest()[:20]}.pt"
        producer = {"frames_sha256": h.hexdigest(), "k": k, "dim": int(frames.shape[1])}
        fit = load_fit(path, producer)
        if fit is None:
            mean, std = frames.mean(0), frames.std(0).clamp_min(1e-5)
            g = torch.Generator().manual_seed(args.seed)
            codebook, distortion = kmeans((frames - mean) / std, k, args.iterations, g)
            fit = {"mean": mean, "std": std, "codebook": codebook, "distortion": torch.tensor(distortion),
                   "frames": torch.tensor(frames.shape[0])}
            store_fit(path, fit, producer)
        q.load_fit(fit["mean"].to(q.mean.device), fit["std"].to(q.std.device), fit["codebook"].to(q.codebook.device))
        used = int(q(frames.to(q.codebook.device)[None])[0].unique().numel())
        self.fit_stats = {"kmeans_distortion": float(fit["distortion"]), "kmeans_codes_used": float(used)}

    @hookimpl
    def compressor_loss_terms(self, ctx: StageContext) -> None:
        for key, value in self.fit_stats.items():
            ctx.log_scalar(key, value)


FIT_KEYS = ("mean", "std", "codebook", "distortion", "frames")


def store_fit(path: Path, fit: dict[str, torch.Tensor], producer: dict[str, Any]) -> None:
    """Cache a fit with what produced it and its checksum (read back by :func:`load_fit`)."""
    from compressor.core.checkpoint import save_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic({**fit, "producer": producer, "sha256": entry_checksum(producer, "kmeans", fit)}, path)


def load_fit(path: Path, producer: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The cached fit at ``path`` if it proves it is ``producer``'s (checksum, shapes); else None, and a
    damaged entry (fitted again) is said in one line."""
    if not path.exists():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        fit = {k: stored[k] for k in FIT_KEYS}
        k, dim = producer["k"], producer["dim"]
        if (stored.get("producer") == producer and all(isinstance(v, torch.Tensor) for v in fit.values())
                and tuple(fit["codebook"].shape) == (k, dim) and tuple(fit["mean"].shape) == (dim,)
                and tuple(fit["std"].shape) == (dim,) and stored.get("sha256") == entry_checksum(producer, "kmeans",
                                                                                                  fit)):
            return fit
    except Exception:  # noqa: BLE001 - unreadable, not a dict, keys missing: fitted again
        pass
    from compressor.core.progress import say

    say(f"k-means units cache {path}: damaged or written for other frames (checksum, shapes): fitted again")
    return None


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", KMeansUnits.name, KMeansUnits)
