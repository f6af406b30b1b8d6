"""What a spec may ask of this machine, checked before any work.

Sizes that can exhaust memory or disk are bounded by what the machine has, not by fixed numbers:

* models: every model of a spec is built on the meta device (shapes, no memory) while its tensors are
  counted; the training state (fp32 weights, gradients and two optimizer moments, 16 bytes a parameter, for
  models some stage trains; 4 bytes for models that are only ever frozen) must fit in the memory of the
  device the run would use (the machine's RAM, or the GPU's memory). Counting stops as soon as the budget is
  exceeded, so ``hidden: 1000000000`` is refused without ever sizing the whole model.
* data: datasets bound themselves (a synthetic corpus must fit in the free space of the cache directory,
  in-memory sets in RAM); see :func:`check_fits`.
* CPU threads and data-loader workers: at most the CPUs this process may use.

Fixed bounds are kept for what has no machine budget: steps and epochs (:data:`MAX_STAGE_STEPS`,
:data:`MAX_EPOCHS`), names (:data:`MAX_NAME_LENGTH`), and the YAML limits of :mod:`compressor.spec.safe_yaml`.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

#: Optimizer steps of one stage: ~20x the longest recipe of the papers here (QuartzNet on LibriSpeech,
#: ~440k steps). Beyond it a run takes weeks on any machine and is a typo, not a plan.
MAX_STAGE_STEPS = 10_000_000
#: Epochs of one stage (QuartzNet trains 400; tiny sets a few hundred).
MAX_EPOCHS = 10_000
#: A name that becomes a path component (spec, stage, model names): NAME_MAX is 255 bytes, and files
#: such as ``<stage>-best.pt`` add to it.
MAX_NAME_LENGTH = 128
#: Parameter tensors of one model. The largest model here (a paper-size RNN-T) has ~60 and a 100-layer
#: Transformer ~1,600; ten thousand is a typo in a layer count (and ten times as many take minutes to build,
#: even on the meta device: torch's LSTM registers its weights in quadratic time).
MAX_PARAMETER_TENSORS = 10_000
#: Training state per parameter: fp32 weight, gradient and two Adam moments.
TRAINED_BYTES_PER_PARAM = 16
FROZEN_BYTES_PER_PARAM = 4


class TooLarge(Exception):
    """A model's tensors exceed the budget while it is being built on the meta device."""

    def __init__(self, count: int, what: str = "parameters") -> None:
        self.count = count
        self.what = what
        super().__init__(f"more than {count:,} {what}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def cpu_count() -> int:
    """CPUs this process may run on: its CPU affinity, bounded by a container's CPU quota (cgroup
    ``cpu.max``), which a container can set below the CPUs it sees."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cpu_quota()
    return max(1, min(cpus, quota)) if quota is not None else max(1, cpus)


def cpu_quota() -> int | None:
    """The container's CPU quota in whole CPUs (rounded up), or ``None`` when there is none."""
    for path, parse in (("/sys/fs/cgroup/cpu.max", lambda t: t.split()),
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", None)):
        try:
            text = Path(path).read_text().strip()
            if parse is not None:
                quota, period = parse(text)[:2]
            else:
                quota = text
                period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
            if quota in ("max", "-1"):
                return None
            return max(1, math.ceil(int(quota) / int(period)))
        except (OSError, ValueError):
            continue
    return None


def ram_bytes() -> int:
    """Physical memory of the machine, or the container's memory limit when that is smaller."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


def device_memory(device_choice: str) -> tuple[int, str]:
    """Memory of the device a run with ``trainer.device = device_choice`` would train on, and its name."""
    if device_choice != "cpu" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(int(os.environ.get("LOCAL_RANK", 0)))
        return int(props.total_memory), f"the GPU's {human_bytes(props.total_memory)}"
    ram = ram_bytes()
    return ram, f"this machine's {human_bytes(ram)} of memory"


def free_disk_bytes(path: str | Path) -> int:
    """Free space on the file system that holds ``path`` (or would hold it: its nearest existing parent)."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def check_fits(needed: int, available: int, what: str, where: str) -> str | None:
    """A message when ``needed`` bytes of ``what`` do not fit in ``available`` bytes of ``where``."""
    if needed <= available:
        return None
    return f"{what} needs about {human_bytes(needed)}, more than {where} ({human_bytes(available)})"


# --------------------------------------------------------------------------------------------------
# Counting a model's size on the meta device
# --------------------------------------------------------------------------------------------------

_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.empty_strided}


def _requested_numel(args: tuple, kwargs: dict) -> int | None:
    size = kwargs.get("size")
    if size is None and args:
        size = args[0] if isinstance(args[0], (tuple, list, torch.Size)) else args
    if size is None:
        return None
    try:
        return math.prod(int(s) for s in size)
    except (TypeError, ValueError):
        return None


#: In-place random fills. On the meta device they do nothing, yet torch runs some of them (``normal_``)
#: through its Python reference implementation, whose first call imports torch._dynamo: seconds of start-up
#: for a validation that builds models only to count their parameters.
_RANDOM_FILLS = {"normal_", "uniform_", "log_normal_", "exponential_", "geometric_", "cauchy_", "random_",
                 "bernoulli_", "erfinv_"}


def _meta_init_target(func: Any, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The meta tensor an initialisation call would fill (``torch.nn.init.*`` or a random fill), else None."""
    if getattr(func, "__module__", None) != "torch.nn.init" and getattr(func, "__name__", "") not in _RANDOM_FILLS:
        return None
    target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
    return target if isinstance(target, torch.Tensor) and target.is_meta else None


class _SkipMetaInit(TorchFunctionMode):
    """Leaves meta tensors uninitialised (there is nothing to initialise) instead of running init code."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        target = _meta_init_target(func, args, kwargs)
        return target if target is not None else func(*args, **kwargs)


@contextlib.contextmanager
def meta_device() -> Iterator[None]:
    """Build modules on the meta device (structure and shapes, no memory, no initialisation)."""
    with torch.device("meta"), _SkipMetaInit():
        yield


class _Budget(TorchFunctionMode):
    """Refuses any single tensor (and a model's parameters in all) larger than ``limit`` elements."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.params = 0
        self.tensors = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        target = _meta_init_target(func, args, kwargs)
        if target is not None:
            return target
        if func in _FACTORIES:
            n = _requested_numel(args, kwargs)
            if n is not None and n > self.limit:
                raise TooLarge(self.limit)
        return func(*args, **kwargs)

    def add(self, n: int) -> None:
        self.params += n
        self.tensors += 1
        if self.params > 4 * self.limit:  # stop early; the exact count (shared weights once) is checked after
            raise TooLarge(self.limit)
        if self.tensors > MAX_PARAMETER_TENSORS:
            raise TooLarge(MAX_PARAMETER_TENSORS, "parameter tensors")


@contextlib.contextmanager
def _counting(limit: int) -> Iterator[_Budget]:
    budget = _Budget(limit)

    def on_param(module: nn.Module, name: str, param: Any) -> None:
        if param is not None:
            budget.add(param.numel())

    handle = nn.modules.module.register_module_parameter_registration_hook(on_param)
    try:
        with torch.device("meta"), budget:
            yield budget
    finally:
        handle.remove()


def meta_parameters(build: Callable[[], nn.Module], limit: int) -> int | None:
    """Parameters of the model ``build()`` makes on the meta device; raise :class:`TooLarge` beyond ``limit``.

    ``None`` when the model cannot be built on the meta device (some need the real data's facts); the
    caller then has nothing to check.
    """
    try:
        with _counting(limit):
            model = build()
    except TooLarge:
        raise
    except Exception:
        return None
    n = sum(p.numel() for p in model.parameters())
    if n > limit:
        raise TooLarge(limit)
    return n


def check_model_sizes(loaded: Any, registry: Any, info: dict[str, Any]) -> None:
    """Refuse a spec whose models' training state cannot fit in the memory of the device it would use.

    Models that cannot be built on the meta device from ``info`` are skipped (the run checks again with the
    real data's facts before it allocates anything). Raises :class:`compressor.core.errors.SpecError`.
    """
    from compressor.core.errors import SpecError
    from compressor.core.registry import LazyFactory

    spec = loaded.spec
    memory, where = device_memory(spec.trainer.device)
    trained = {m for st in spec.stages for m in (*st.train, st.forward_model)}
    used = 0
    for name, ms in spec.all_models().items():
        per_param = TRAINED_BYTES_PER_PARAM if name in trained else FROZEN_BYTES_PER_PARAM
        limit = max(0, memory - used) // per_param
        entry = registry.get("model", ms.name)
        path = (name,) if name in ("teacher", "student") else ("models", name)
        if isinstance(entry.factory, LazyFactory):  # its import errors are reported, not skipped below
            entry.factory.resolve()
        try:
            n = meta_parameters(lambda e=entry, m=name: e.factory(loaded.model_args[m], info=dict(info)), limit)
        except TooLarge as e:
            if e.what != "parameters":
                raise SpecError(f"the {ms.name} model is too large: {e}", path) from None
            raise SpecError(f"the {ms.name} model is too large: more than {limit:,} parameters, whose training "
                            f"state ({per_param} bytes a parameter) exceeds {where}", path) from None
        if n is not None:
            used += n * per_param
