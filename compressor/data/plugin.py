"""Registers the components of the speech data layer: the real-format readers and ``mix``."""

from __future__ import annotations

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Registry
from compressor.data.datasets import DATASETS
from compressor.data.mix import MixArgs, build_mix, mix_check, mix_info


@hookimpl
def compressor_register(registry: Registry) -> None:
    for name, (factory, args, info) in DATASETS.items():
        registry.add("dataset", name, factory, args=args, info=info)
    registry.add("dataset", "mix", build_mix, args=MixArgs, info=mix_info, check=mix_check)
