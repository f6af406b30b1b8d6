"""A validated spec, resolved: the parsed schema with every component's validated arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from compressor.spec.schema import Spec


@dataclass
class LoadedSpec:
    """A validated spec: the parsed schema, the raw mapping (after ``--set``), component arguments."""

    spec: Spec
    raw: dict[str, Any]
    file: str
    task_args: BaseModel
    data_args: BaseModel
    model_args: dict[str, BaseModel]
    plugin_args: list[list[BaseModel]]
    export_args: BaseModel | None = None
    optimizer_args: list[BaseModel] = field(default_factory=list)
    lr_schedule_args: list[BaseModel] = field(default_factory=list)
    lines: dict[tuple, int] = field(default_factory=dict)
    stage_task_args: list[BaseModel | None] = field(default_factory=list)
    stage_data_args: list[BaseModel | None] = field(default_factory=list)

    def stage_task(self, index: int) -> tuple[str, BaseModel]:
        """The task name and arguments stage ``index`` runs (its own, or the spec's)."""
        st = self.spec.stages[index]
        if st.task is not None and index < len(self.stage_task_args):
            return st.task.name, self.stage_task_args[index]  # type: ignore[return-value]
        return self.spec.task.name, self.task_args

    def stage_data(self, index: int) -> tuple[str, BaseModel]:
        """The dataset name and arguments stage ``index`` trains on (its own, or the spec's)."""
        st = self.spec.stages[index]
        if st.data is not None and index < len(self.stage_data_args):
            return st.data.name, self.stage_data_args[index]  # type: ignore[return-value]
        return self.spec.data.name, self.data_args
