"""The components of a run: its data, task and models built from a validated spec, and the :class:`Run` state
its stages share."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressor.core.checkpoint import load_state_dict_file, mismatch
from compressor.core.errors import UserError
from compressor.core.registry import build_component
from compressor.core.task import Task
from compressor.data.base import DataModule
from compressor.data.cache import default_cache_dir
from compressor.plugins import Plugins
from compressor.run import init_from
from compressor.run.records import MetricsWriter
from compressor.spec import LoadedSpec, model_reads


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device is 'cuda' but no CUDA device is available")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", 0))
    return torch.device("cuda", local)


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast speeds training up."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_precision(choice: str, device: torch.device) -> str:
    """The precision a run computes in: ``auto`` is bf16 (else fp16) on a GPU and fp32 on a CPU; ``bf16`` on a CPU
    is honoured where the CPU computes bf16 natively (else fp32: emulated bf16 is slower than fp32)."""
    if device.type != "cuda":
        return "bf16" if choice == "bf16" and cpu_bf16_supported() else "fp32"
    if choice == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return choice



def build_data(loaded: LoadedSpec, plugins: Plugins) -> DataModule:
    entry = plugins.registry.get("dataset", loaded.spec.data.name)
    data = build_component(entry, lambda: entry.factory(loaded.data_args, cache_dir=default_cache_dir(),
                                                        seed=loaded.spec.seed))
    request_model_inputs(loaded, plugins.registry, data)
    return data


def request_model_inputs(loaded: LoadedSpec, registry: Any, data: DataModule) -> None:
    """Ask the data for the on-request batch keys (waveforms) that some model of the spec reads."""
    keys: set[str] = set()
    for name in loaded.spec.all_models():
        keys.update(model_reads(registry, loaded, name, optional=True) or ())
    if keys:
        data.request(keys)


def build_task(loaded: LoadedSpec, plugins: Plugins, data: DataModule) -> Task:
    entry = plugins.registry.get("task", loaded.spec.task.name)
    return build_component(entry, lambda: entry.factory(loaded.task_args, data.info))


def build_models(loaded: LoadedSpec, plugins: Plugins, data: DataModule,
                 init_reports: dict[str, Any] | None = None, pretrained: dict[str, Path] | None = None,
                 only: list[str] | None = None, load_checkpoints: bool = True) -> dict[str, nn.Module]:
    """Build every model of the spec (seeded, so initial weights are reproducible) and load checkpoints.

    With ``init_reports`` (a dict to fill), models with ``init_from`` load their matching weights (from the
    run directories in ``pretrained`` for ``init_from.spec``) and their reports land in it. ``only`` builds
    just those models (the others are not touched); ``load_checkpoints=False`` leaves ``checkpoint:`` files
    unread (a finished run's final weights replace them).
    """
    models: dict[str, nn.Module] = {}
    for i, (name, ms) in enumerate(loaded.spec.all_models().items()):
        if only is not None and name not in only:
            continue
        torch.manual_seed(loaded.spec.seed * 1000 + i)
        entry = plugins.registry.get("model", ms.name)
        model = build_component(entry, lambda e=entry, n=name: e.factory(loaded.model_args[n], info=data.info))
        if ms.init_from is not None and init_reports is not None:
            init_reports[name] = init_from.apply(model, name, ms.init_from, loaded.file, plugins.registry,
                                                 (pretrained or {}).get(name))
        if ms.checkpoint and load_checkpoints:
            state = load_state_dict_file(Path(ms.checkpoint).expanduser())
            problem = mismatch(model, state)
            if problem:
                raise UserError(f"{loaded.file}: {name}.checkpoint {ms.checkpoint} does not match the "
                                f"{name} model of the spec ({ms.name}): {problem}")
            model.load_state_dict(state)
        models[name] = model
    return models


@dataclass
class Run:
    """Everything one run shares across its stages."""

    loaded: LoadedSpec
    plugins: Plugins
    run_dir: Path
    device: torch.device
    precision: str
    data: DataModule
    task: Task
    models: dict[str, nn.Module]
    rank: int = 0
    world_size: int = 1
    metrics: MetricsWriter | None = None
    results: dict[str, Any] = field(default_factory=lambda: {"stages": [], "final": {}})
    _stage_data: dict[str, DataModule] = field(default_factory=dict)
    pretrained: dict[str, Path] = field(default_factory=dict)  # init_from.spec runs, for models built later
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)  # written into every checkpoint of the run

    def data_for(self, index: int) -> DataModule:
        """The data stage ``index`` trains on: its own ``data:`` (built once, shared by stages that name the
        same dataset and arguments) or the spec's."""
        if self.loaded.spec.stages[index].data is None:
            return self.data
        return stage_data(self.loaded, self.plugins, index, self._stage_data)

    def task_for(self, index: int) -> Task:
        """The task stage ``index`` runs: its own ``task:`` or the spec's, built on that stage's data."""
        st = self.loaded.spec.stages[index]
        if st.task is None and st.data is None:
            return self.task
        stage = self.loaded.stages[index]
        return self.plugins.registry.get("task", stage.task).factory(stage.task_args, self.data_for(index).info)
    eval_data: dict[str, Any] = field(default_factory=dict)  # named evaluation sets' data, built on first use

    @property
    def seed(self) -> int:
        return self.loaded.spec.seed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log(self, record: dict[str, Any]) -> None:
        if self.is_main and self.metrics is not None:
            self.metrics.write(record, record.get("step"))

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        if self.device.type == "cpu" and self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def stage_data(loaded: LoadedSpec, plugins: Plugins, index: int, built: dict[str, DataModule]) -> DataModule:
    """The data of stage ``index``'s own ``data:``, built once into ``built`` (keyed by dataset and arguments)."""
    name, args = loaded.stages[index].data, loaded.stages[index].data_args
    key = json.dumps([name, args.model_dump(mode="json")], sort_keys=True)
    if key not in built:
        with torch.random.fork_rng(devices=[]):  # building data must not shift the run's random stream
            built[key] = plugins.registry.get("dataset", name).factory(args, cache_dir=default_cache_dir(),
                                                                       seed=loaded.spec.seed)
            request_model_inputs(loaded, plugins.registry, built[key])
    return built[key]


def untrained_models(spec: Any) -> list[str]:
    """Models whose training was switched off: every stage that trains them is disabled (``enabled: false``)
    and they load no weights (``checkpoint``, ``init_from``). They are as initialised, so they are neither
    evaluated nor reported beside the others, nor used as an export's reference. A model no stage trains
    (a pre-trained, frozen teacher) is not among them."""
    out = []
    for name, ms in spec.all_models().items():
        stages = [st for st in spec.stages if name in st.train]
        if stages and not any(st.enabled for st in stages) and ms.checkpoint is None and ms.init_from is None:
            out.append(name)
    return out
