"""A small synthetic feature-sequence classification set for fast engine tests.

Each class has a random template of feature frames; an example is its class's template, warped in time
to a random length, plus Gaussian noise. It needs no audio, so engine tests run in seconds. Real speech
corpora live in the data layer (``commands``, ``read_speech``, ...).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from compressor.data.base import DataModule, ListDataset
from compressor.registry import Args


class SyntheticFeaturesArgs(Args):
    num_classes: int = Field(default=8, ge=2)
    feature_dim: int = Field(default=20, ge=1)
    min_frames: int = Field(default=20, ge=1)
    max_frames: int = Field(default=40, ge=1)
    train_size: int = Field(default=512, ge=1)
    valid_size: int = Field(default=128, ge=1)
    test_size: int = Field(default=128, ge=1)
    noise: float = Field(default=1.0, ge=0)
    seed: int = 1234



class SyntheticFeatures(DataModule):
    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        lengths = torch.tensor([it["features"].shape[0] for it in items])
        feats = torch.zeros(len(items), int(lengths.max()), items[0]["features"].shape[1])
        for i, it in enumerate(items):
            feats[i, : it["features"].shape[0]] = it["features"]
        return {"features": feats, "feature_lengths": lengths,
                "label": torch.tensor([it["label"] for it in items])}


def build_synthetic_features(args: SyntheticFeaturesArgs, **_: Any) -> SyntheticFeatures:
    """Random class templates + noise, variable length: a seconds-fast classification set."""
    g = torch.Generator().manual_seed(args.seed)
    templates = torch.randn(args.num_classes, 8, args.feature_dim, generator=g)

    def make(n: int) -> ListDataset:
        items = []
        for _ in range(n):
            label = int(torch.randint(args.num_classes, (1,), generator=g))
            length = int(torch.randint(args.min_frames, max(args.min_frames, args.max_frames) + 1, (1,),
                                       generator=g))
            idx = torch.linspace(0, 7, length).round().long()
            x = templates[label][idx] + args.noise * torch.randn(length, args.feature_dim, generator=g)
            items.append({"features": x, "label": label})
        return ListDataset(items)

    splits = {"train": make(args.train_size), "valid": make(args.valid_size), "test": make(args.test_size)}
    info = {"num_classes": args.num_classes, "feature_dim": args.feature_dim,
            "labels": [f"class{i}" for i in range(args.num_classes)]}
    return SyntheticFeatures(splits, info)


def check_synthetic_features(args: SyntheticFeaturesArgs) -> None:
    """The set lives in memory: refuse sizes whose tensors cannot fit in this machine's RAM."""
    from compressor.errors import UserError
    from compressor.limits import check_fits, ram_bytes

    n = args.train_size + args.valid_size + args.test_size
    frames = max(args.min_frames, args.max_frames)
    needed = 4 * args.feature_dim * (8 * args.num_classes + frames * n) + 500 * n  # floats + per-item objects
    problem = check_fits(needed, ram_bytes(), f"{n:,} examples of up to {frames} x {args.feature_dim} features",
                         "this machine's memory")
    if problem:
        raise UserError(problem)


def synthetic_features_info(args: SyntheticFeaturesArgs) -> dict[str, Any]:
    return {"num_classes": args.num_classes, "feature_dim": args.feature_dim}
