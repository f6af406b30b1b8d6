"""Registers the components of the edge export (issue 5)."""

from __future__ import annotations

from compressor.hookspecs import hookimpl
from compressor.registry import Registry


@hookimpl
def compressor_register(registry: Registry) -> None:
    pass
