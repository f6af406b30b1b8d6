"""What the engine tells plugins about the stage being run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from compressor.data.base import DataModule
    from compressor.spec import StageSpec
    from compressor.task import Task


@dataclass
class StageContext:
    """State of one training stage, passed to every hook as ``ctx``.

    Counters: ``step`` is the number of optimizer steps done in this stage, ``epoch`` the 0-based epoch,
    ``total_steps``/``total_epochs``/``steps_per_epoch`` the stage's budget. ``models`` maps names to modules
    (plugins may add wrappers); ``forward_model`` names the one the task's forward runs on.
    """

    name: str
    index: int
    stage: StageSpec
    models: dict[str, nn.Module]
    forward_model: str
    task: Task
    data: DataModule
    device: torch.device
    run_dir: Path
    spec: dict[str, Any]
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    step: int = 0
    epoch: int = 0
    total_steps: int = 1
    total_epochs: int = 1
    steps_per_epoch: int = 1
    training: bool = True
    scalars: dict[str, float] = field(default_factory=dict)
    _batch_error: float | None = None
    _batch_error_source: tuple[Any, ...] | None = None

    @property
    def batch_error(self) -> float | None:
        """Error rate of the current training batch (computed on first use: most stages never need it)."""
        if self._batch_error_source is not None:
            task, outputs, batch = self._batch_error_source
            self._batch_error_source = None
            self._batch_error = task.batch_error(outputs, batch)
        return self._batch_error

    @batch_error.setter
    def batch_error(self, value: float | None) -> None:
        self._batch_error, self._batch_error_source = value, None

    def defer_batch_error(self, task: Task, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        self._batch_error_source = (task, outputs, batch)

    @property
    def progress(self) -> float:
        """Position in the stage, in [0, 1]: 0.0 at its first optimizer step, 1.0 at its last.

        Steps count 0..T-1 while the hooks of a step run (as the schedules count them), so this is
        ``step / (T - 1)``; a one-step stage is at 1.0.
        """
        if self.total_steps <= 1:
            return 1.0
        return min(1.0, self.step / (self.total_steps - 1))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log_scalar(self, name: str, value: float) -> None:
        """Log a scheduled or diagnostic value for the current step; it is written and plotted."""
        self.scalars[name] = float(value)

    def model(self, name: str) -> nn.Module:
        try:
            return self.models[name]
        except KeyError:
            raise KeyError(f"no model '{name}' in this stage (models: {', '.join(self.models)})") from None
