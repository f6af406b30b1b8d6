"""How many CPU threads a command computes with.

Every command that computes (``run``, ``eval``, ``export``, ``data``) calls :func:`configure_threads` once,
before any work: ``--threads N`` when given, else the spec's ``trainer.threads``, else as many threads as
this process has CPUs (:func:`compressor.core.limits.cpu_count`: its affinity and its container's CPU quota).
torch's own default counts the machine's cores, which a container or a shared machine may not give it, and
more threads than cores make every step wait on the others: evaluation ran 6x slower that way on 2 cores.
A request for more threads than there are CPUs is lowered to the CPUs (a run resumed or evaluated on a
smaller machine than it started on); processes started by ``torchrun`` on one machine share its CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from compressor.core.limits import cpu_count


@dataclass(frozen=True)
class Threads:
    """What :func:`configure_threads` chose, and why (recorded in ``environment.json``)."""

    count: int
    requested: int | None
    source: str  # "--threads", "trainer.threads" or "default"
    cpus: int

    def describe(self) -> str:
        why = {"--threads": "--threads", "trainer.threads": "the spec's trainer.threads"}.get(self.source)
        shown = f"{self.count} thread{'s' if self.count != 1 else ''}"
        if why is None:
            return f"{shown} (the {self.cpus} CPUs this process may use)"
        if self.requested is not None and self.requested > self.count:
            return f"{shown} ({why} asked for {self.requested}; this process may use {self.cpus} CPUs)"
        return f"{shown} ({why})"


_CURRENT: Threads | None = None


def configure_threads(flag: int | None = None, spec_threads: int | None = None, announce: bool = True
                      ) -> Threads:
    """Set torch's intra-op threads for this process, and the default of onnxruntime and sherpa-onnx sessions
    (:func:`thread_count`); a progress line says what was chosen."""
    import torch

    from compressor.core.progress import say

    global _CURRENT
    cpus = cpu_count()
    if flag is not None:
        requested, source = flag, "--threads"
    elif spec_threads is not None:
        requested, source = spec_threads, "trainer.threads"
    else:
        requested, source = None, "default"
    # torchrun's processes on one machine share its CPUs
    share = max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))
    count = max(1, min(requested if requested is not None else share, cpus))
    torch.set_num_threads(count)
    _CURRENT = Threads(count, requested, source, cpus)
    say(f"compute: {_CURRENT.describe()}", enabled=announce and os.environ.get("RANK", "0") == "0")
    return _CURRENT


def current() -> Threads | None:
    """What the command chose (``None`` before :func:`configure_threads`)."""
    return _CURRENT


def thread_count() -> int:
    """Threads for work that sizes its own pool (onnxruntime sessions, sherpa-onnx): the command's choice,
    or the CPUs this process may use."""
    return _CURRENT.count if _CURRENT is not None else cpu_count()
