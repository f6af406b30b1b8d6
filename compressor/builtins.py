"""Core components, registered through the same entry-point group as every plugin."""

from __future__ import annotations

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Registry
from compressor.core.schedules import BUILTIN_SCHEDULES
from compressor.corpora.synthetic_features import (
    SyntheticFeaturesArgs,
    build_synthetic_features,
    check_synthetic_features,
    synthetic_features_info,
)
from compressor.run.lr import BUILTIN_LR_SCHEDULES
from compressor.run.optim import BUILTIN_OPTIMIZERS


@hookimpl
def compressor_register(registry: Registry) -> None:
    for schedule in BUILTIN_SCHEDULES:
        registry.add("schedule", schedule.name, schedule, doc=(schedule.__doc__ or "").split("\n")[0])
    for name, factory, args in BUILTIN_OPTIMIZERS:
        registry.add("optimizer", name, factory, args=args)
    for lr_schedule in BUILTIN_LR_SCHEDULES:
        registry.add("lr_schedule", lr_schedule.name, lr_schedule)
    registry.add("dataset", "synthetic_features", build_synthetic_features, args=SyntheticFeaturesArgs,
                 info=synthetic_features_info, check=check_synthetic_features)
