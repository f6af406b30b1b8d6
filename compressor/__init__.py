"""compressor: a plugin-based model-compression engine for speech models."""

from compressor.context import StageContext
from compressor.data.base import DataModule
from compressor.errors import PluginError, SpecError, UserError
from compressor.hookspecs import hookimpl, hookspec
from compressor.losses import LossTerms
from compressor.registry import Args, Registry
from compressor.schedules import Schedule, ScheduleArg
from compressor.strategy import Strategy
from compressor.task import Task

__version__ = "0.1.0"

__all__ = [
    "Args", "DataModule", "LossTerms", "PluginError", "Registry", "Schedule", "ScheduleArg", "SpecError",
    "StageContext",
    "Strategy", "Task", "UserError", "hookimpl", "hookspec", "__version__",
]
