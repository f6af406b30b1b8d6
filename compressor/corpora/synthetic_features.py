"""A small synthetic feature-sequence classification set for fast engine tests.

Each class has a random template of feature frames; an example is its class's template, warped in time
to a random length, plus Gaussian noise. It needs no audio, so engine tests run in seconds. With
``text: true`` every example also carries a transcript: one of a few phrasings of its class, made of words from
a small vocabulary (for cross-modal tests: a text teacher reads ``text``, a feature student reads
``features``). Every example has an id (``ids`` in a batch). Synthetic speech corpora live beside it
(``commands``, ``read_speech``, ...).
"""

from __future__ import annotations

import random
from typing import Any

import torch
from pydantic import Field

from compressor.core.errors import UserError
from compressor.core.limits import check_fits, ram_bytes
from compressor.core.registry import Args
from compressor.data.base import DataModule, ListDataset

WORDS = ("turn", "on", "off", "the", "lights", "music", "heat", "up", "down", "in", "kitchen", "bedroom",
         "washroom", "volume", "bring", "me", "shoes", "socks", "newspaper", "switch", "language", "lamp",
         "stop", "play")


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
    text: bool = Field(default=False, description="give every example a transcript (batch key 'text')")
    phrasings: int = Field(default=3, ge=1, description="transcripts per class, with text: true")


class SyntheticFeatures(DataModule):
    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        lengths = torch.tensor([it["features"].shape[0] for it in items])
        feats = torch.zeros(len(items), int(lengths.max()), items[0]["features"].shape[1])
        for i, it in enumerate(items):
            feats[i, : it["features"].shape[0]] = it["features"]
        batch = {"features": feats, "feature_lengths": lengths,
                 "label": torch.tensor([it["label"] for it in items]), "ids": [it["id"] for it in items]}
        if "text" in items[0]:
            batch["text"] = [it["text"] for it in items]
        return batch


def _phrases(args: SyntheticFeaturesArgs) -> list[list[str]]:
    """``phrasings`` distinct 2-5 word transcripts per class (a separate generator: features do not change)."""
    rng = random.Random(f"phrases:{args.seed}")
    seen: set[str] = set()
    out: list[list[str]] = []
    for _ in range(args.num_classes):
        mine: list[str] = []
        while len(mine) < args.phrasings:
            phrase = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
            if phrase not in seen:
                seen.add(phrase)
                mine.append(phrase)
        out.append(mine)
    return out


def build_synthetic_features(args: SyntheticFeaturesArgs, **_: Any) -> SyntheticFeatures:
    """Random class templates + noise, variable length: a seconds-fast classification set."""
    g = torch.Generator().manual_seed(args.seed)
    templates = torch.randn(args.num_classes, 8, args.feature_dim, generator=g)
    phrases = _phrases(args) if args.text else None
    pick = random.Random(f"pick:{args.seed}")

    def make(split: str, n: int) -> ListDataset:
        items = []
        for k in range(n):
            label = int(torch.randint(args.num_classes, (1,), generator=g))
            length = int(torch.randint(args.min_frames, max(args.min_frames, args.max_frames) + 1, (1,),
                                       generator=g))
            idx = torch.linspace(0, 7, length).round().long()
            x = templates[label][idx] + args.noise * torch.randn(length, args.feature_dim, generator=g)
            item: dict[str, Any] = {"features": x, "label": label, "id": f"{split}-{k:05d}"}
            if phrases is not None:
                item["text"] = pick.choice(phrases[label])
            items.append(item)
        return ListDataset(items)

    splits = {s: make(s, n) for s, n in (("train", args.train_size), ("valid", args.valid_size),
                                          ("test", args.test_size))}
    info = {**synthetic_features_info(args), "labels": [f"class{i}" for i in range(args.num_classes)]}
    return SyntheticFeatures(splits, info)


def check_synthetic_features(args: SyntheticFeaturesArgs) -> None:
    """The set lives in memory: refuse sizes whose tensors cannot fit in this machine's RAM."""
    n = args.train_size + args.valid_size + args.test_size
    frames = max(args.min_frames, args.max_frames)
    needed = 4 * args.feature_dim * (8 * args.num_classes + frames * n) + 500 * n  # floats + per-item objects
    problem = check_fits(needed, ram_bytes(), f"{n:,} examples of up to {frames} x {args.feature_dim} features",
                         "this machine's memory")
    if problem:
        raise UserError(problem)


def synthetic_features_info(args: SyntheticFeaturesArgs) -> dict[str, Any]:
    keys = ["features", "feature_lengths", "label", "ids"] + (["text"] if args.text else [])
    return {"num_classes": args.num_classes, "feature_dim": args.feature_dim, "min_frames": args.min_frames,
            "batch_keys": keys, "augmented": False}
