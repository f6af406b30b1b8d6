"""compressor: a plugin-based model-compression engine for speech models.

The public names below load on first use (``from compressor import Strategy`` works as usual), so that
``compressor --help`` and the commands that need no model do not wait for torch to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Args": "compressor.registry",
    "Registry": "compressor.registry",
    "DataModule": "compressor.data.base",
    "PluginError": "compressor.errors",
    "SpecError": "compressor.errors",
    "UserError": "compressor.errors",
    "hookimpl": "compressor.hookspecs",
    "hookspec": "compressor.hookspecs",
    "LossTerms": "compressor.losses",
    "Schedule": "compressor.schedules",
    "ScheduleArg": "compressor.schedules",
    "StageContext": "compressor.context",
    "Strategy": "compressor.strategy",
    "Task": "compressor.task",
}

__all__ = [
    "Args", "DataModule", "LossTerms", "PluginError", "Registry", "Schedule", "ScheduleArg", "SpecError",
    "StageContext", "Strategy", "Task", "UserError", "hookimpl", "hookspec", "__version__",
]

if TYPE_CHECKING:
    from compressor.context import StageContext
    from compressor.data.base import DataModule
    from compressor.errors import PluginError, SpecError, UserError
    from compressor.hookspecs import hookimpl, hookspec
    from compressor.losses import LossTerms
    from compressor.registry import Args, Registry
    from compressor.schedules import Schedule, ScheduleArg
    from compressor.strategy import Strategy
    from compressor.task import Task


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'compressor' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
