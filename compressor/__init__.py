"""compressor: a plugin-based model-compression engine for speech models.

The public names below load on first use (``from compressor import Strategy`` works as usual), so that
``compressor --help`` and the commands that need no model do not wait for torch to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Args": "compressor.core.registry",
    "Registry": "compressor.core.registry",
    "DataModule": "compressor.data.base",
    "PluginError": "compressor.core.errors",
    "SpecError": "compressor.core.errors",
    "UserError": "compressor.core.errors",
    "hookimpl": "compressor.core.hookspecs",
    "hookspec": "compressor.core.hookspecs",
    "LossTerms": "compressor.core.losses",
    "Schedule": "compressor.core.schedules",
    "ScheduleArg": "compressor.core.schedules",
    "StageContext": "compressor.core.context",
    "Strategy": "compressor.core.strategy",
    "Task": "compressor.core.task",
}

__all__ = [
    "Args", "DataModule", "LossTerms", "PluginError", "Registry", "Schedule", "ScheduleArg", "SpecError",
    "StageContext", "Strategy", "Task", "UserError", "hookimpl", "hookspec", "__version__",
]

if TYPE_CHECKING:
    from compressor.core.context import StageContext
    from compressor.core.errors import PluginError, SpecError, UserError
    from compressor.core.hookspecs import hookimpl, hookspec
    from compressor.core.losses import LossTerms
    from compressor.core.registry import Args, Registry
    from compressor.core.schedules import Schedule, ScheduleArg
    from compressor.core.strategy import Strategy
    from compressor.core.task import Task
    from compressor.data.base import DataModule


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'compressor' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
