"""Registers the synthetic corpora (``commands``, ``read_speech``, ``shifted``) and the held-out evaluation
corpus (``heldout_speech``) as dataset components."""

from __future__ import annotations

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Registry
from compressor.corpora.datasets import CHECKS, DATASETS
from compressor.corpora.heldout import KIND, HeldoutArgs, build_heldout_speech, heldout_check, heldout_info


@hookimpl
def compressor_register(registry: Registry) -> None:
    for name, (factory, args, info) in DATASETS.items():
        registry.add("dataset", name, factory, args=args, info=info, check=CHECKS[name])
    registry.add("dataset", KIND, build_heldout_speech, args=HeldoutArgs, info=heldout_info, check=heldout_check)
