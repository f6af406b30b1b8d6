"""Registers the synthetic corpora (``commands``, ``read_speech``, ``shifted``) as dataset components."""

from __future__ import annotations

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Registry
from compressor.corpora.datasets import CHECKS, DATASETS


@hookimpl
def compressor_register(registry: Registry) -> None:
    for name, (factory, args, info) in DATASETS.items():
        registry.add("dataset", name, factory, args=args, info=info, check=CHECKS[name])
