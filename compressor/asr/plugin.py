"""Registers the components of the ASR models and tasks (issue 4)."""

from __future__ import annotations

from compressor.hookspecs import hookimpl
from compressor.registry import Registry


@hookimpl
def compressor_register(registry: Registry) -> None:
    pass
