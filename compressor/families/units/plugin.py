"""Registers the speech-units family: model ``vq_bert`` and task ``masked_units``."""

from __future__ import annotations

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Registry
from compressor.families.units.model import VQBertArgs, build_vq_bert
from compressor.families.units.task import MaskedUnits


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "vq_bert", build_vq_bert, args=VQBertArgs, reads=("features", "feature_lengths"),
                 doc="k-means units of fbank frames + a BERT over them ([CLS], [MASK]; seed 000's speech encoder)")
    registry.add("task", MaskedUnits.name, MaskedUnits)
