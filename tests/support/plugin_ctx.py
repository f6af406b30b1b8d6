"""A stage context for calling a strategy's hooks directly in unit tests (no engine, no spec file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressor.core.context import StageContext
from compressor.core.task import Task
from compressor.data.base import DataModule, ListDataset
from compressor.plugins import get_registry
from compressor.spec import StageSpec


class FeatureData(DataModule):
    """Items ``{"features": (T, F), "ids": str}`` padded into ``features``/``feature_lengths``/``ids``."""

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        lengths = torch.tensor([it["features"].shape[0] for it in items])
        feats = torch.zeros(len(items), int(lengths.max()), items[0]["features"].shape[1])
        for i, it in enumerate(items):
            feats[i, : it["features"].shape[0]] = it["features"]
        return {"features": feats, "feature_lengths": lengths, "ids": [it["id"] for it in items]}


def feature_data(lengths: list[int], dim: int = 2, seed: int = 0) -> FeatureData:
    g = torch.Generator().manual_seed(seed)
    items = [{"features": torch.randn(n, dim, generator=g), "id": f"u{i}"} for i, n in enumerate(lengths)]
    return FeatureData({"train": ListDataset(items), "valid": ListDataset(items)}, {"feature_dim": dim})


def make_ctx(models: dict[str, nn.Module], data: DataModule, forward: str = "student",
             run_dir: Path | None = None, **kw: Any) -> StageContext:
    train = kw.pop("train", [forward])
    stage = StageSpec(name="s", train=train, epochs=1, forward=forward)
    return StageContext(name="s", index=0, stage=stage, models=dict(models), forward_model=forward, task=Task(None),
                        data=data, device=torch.device("cpu"), run_dir=run_dir or Path("."), spec={}, **kw)


def logmel_ctx(lengths: list[int]) -> tuple[StageContext, FeatureData]:
    """A context and data of 80-channel "log-mel" utterances of ``lengths`` frames (the ``nemo`` front end), for
    strategies that transform features."""
    data = feature_data(lengths, dim=80)
    data.info["frontend"] = "nemo"
    return make_ctx({"student": nn.Linear(80, 2)}, data), data


def build_strategy(name: str, **args: Any) -> Any:
    entry = get_registry().get("strategy", name)
    return entry.factory(entry.args.model_validate(args))
