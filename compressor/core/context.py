"""What the engine tells plugins about the stage being run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressor.core.forward_hooks import ForwardHooks
from compressor.core.registry import Registry
from compressor.core.task import Task


@dataclass
class SharedForward:
    """One forward of a model on one batch, shared by every strategy of the step that asks for it
    (:meth:`StageContext.forward_once`): the output dict and the outputs of the modules watched for it."""

    outputs: dict[str, Any]
    modules: dict[str, Any]


@dataclass
class StageContext:
    """State of one training stage, passed to every hook as ``ctx``.

    Counters: ``step`` is the number of optimizer steps done in this stage, ``epoch`` the 0-based epoch,
    ``total_steps``/``total_epochs``/``steps_per_epoch`` the stage's budget. ``models`` maps names to modules
    (plugins may add wrappers); ``forward_model`` names the one the task's forward runs on.
    """

    name: str
    index: int
    stage: Any  # the stage's entry of the spec (compressor.spec.StageSpec)
    models: dict[str, nn.Module]
    forward_model: str
    task: Task
    data: Any  # the stage's data (a compressor.data.base.DataModule)
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
    loaded: Any = None  # the validated spec (compressor.spec.LoadedSpec), where the engine runs the stage
    registry: Registry | None = None  # the run's components, where the engine runs the stage
    _batch_error: float | None = None
    _batch_error_source: tuple[Any, ...] | None = None
    _watched: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _forwards: dict[tuple[str, int], tuple[Any, SharedForward]] = field(default_factory=dict, repr=False)

    def watch(self, model: str, modules: Iterable[str]) -> None:
        """Capture the outputs of these named submodules of ``model`` (names as in ``named_modules()`` of the
        unwrapped model) in every :meth:`forward_once` of it. Call it in ``compressor_prepare_models``."""
        self._watched.setdefault(model, set()).update(modules)

    def forward_once(self, name: str, batch: dict[str, Any]) -> SharedForward:
        """``task.forward`` of model ``name`` on ``batch``, run once per batch however many strategies ask.

        Two strategies distilling from the same teacher (logit KD and representation KD) share its one forward
        in each step. Without gradients when the model is frozen (no parameter requires them) or gradients
        are off; with them when the stage trains it. The memo lasts one micro-batch (:meth:`new_batch`).
        """
        key = (name, id(batch))
        found = self._forwards.get(key)
        if found is not None and found[0] is batch:
            return found[1]
        model = self.model(name)
        trainable = any(p.requires_grad for p in model.parameters())
        with ForwardHooks(model) as hooks:
            try:
                captured = hooks.capture(sorted(self._watched.get(name, ())))
            except KeyError as e:
                raise KeyError(f"model '{name}' has {e.args[0]}") from None
            with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
                outputs = self.task.forward(model, batch)
        shared = SharedForward(outputs, captured)
        self._forwards[key] = (batch, shared)  # the batch is held, so its id is not reused while memoised
        return shared

    def new_batch(self) -> None:
        """Forget the shared forwards of the previous micro-batch (the engine calls it once per batch)."""
        self._forwards.clear()

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

    def model_reads(self, name: str, optional: bool = True) -> tuple[str, ...] | None:
        """Batch keys model ``name`` reads, as its registry entry declares (None when unknown)."""
        if self.loaded is None or self.registry is None or name not in self.loaded.spec.all_models():
            return None
        return self.registry.model_reads(self.loaded.spec.all_models()[name].name, self.loaded.model_args[name],
                                         optional)

    def model(self, name: str) -> nn.Module:
        try:
            return self.models[name]
        except KeyError:
            raise KeyError(f"no model '{name}' in this stage (models: {', '.join(self.models)})") from None
