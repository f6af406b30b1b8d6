"""A validated spec, resolved: the parsed schema with every component's validated arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from compressor.spec.schema import Spec, StageSpec


@dataclass(frozen=True)
class ResolvedStage:
    """One stage of a validated spec with everything it runs with: its plugins', optimizer's and LR schedule's
    validated arguments, and the task and data it runs on (its own ``task:``/``data:``, or the spec's)."""

    spec: StageSpec
    plugin_args: tuple[BaseModel, ...]
    optimizer_args: BaseModel
    lr_schedule_args: BaseModel
    task: str
    task_args: BaseModel
    data: str
    data_args: BaseModel


@dataclass
class LoadedSpec:
    """A validated spec: the parsed schema, the raw mapping (after ``--set``), component arguments, and each
    stage resolved (:class:`ResolvedStage`, in the order of ``spec.stages``)."""

    spec: Spec
    raw: dict[str, Any]
    file: str
    task_args: BaseModel
    data_args: BaseModel
    model_args: dict[str, BaseModel]
    stages: tuple[ResolvedStage, ...]
    export_args: BaseModel | None = None
    lines: dict[tuple, int] = field(default_factory=dict)
