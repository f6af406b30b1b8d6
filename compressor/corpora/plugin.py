"""Registers the synthetic corpora (``commands``, ``read_speech``, ``shifted``) as dataset components."""

from __future__ import annotations

from compressor.corpora.datasets import CHECKS, DATASETS
from compressor.hookspecs import hookimpl
from compressor.registry import Registry


@hookimpl
def compressor_register(registry: Registry) -> None:
    for name, (factory, args, info) in DATASETS.items():
        registry.add("dataset", name, factory, args=args, info=info, check=CHECKS[name])
