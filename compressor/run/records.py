"""What a run writes as it goes: ``environment.json`` (python, platform, package versions, git commit, device)
and ``metrics.jsonl`` (one JSON object per optimizer step and per evaluation, also sent to the trackers)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.core.errors import raise_disk_error
from compressor.core.interrupts import deferred
from compressor.plugins import loaded_plugins
from compressor.run.tracking import open_trackers

if TYPE_CHECKING:
    import torch

def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of compressor, every package it requires, the packages of loaded plugins, and ``extra``."""
    names: list[str] = ["compressor"]
    try:
        for req in md.requires("compressor") or []:
            if "extra ==" in req:
                continue  # optional extras: recorded below only when installed and asked for
            names.append(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
    except md.PackageNotFoundError:
        pass
    names += list(extra)
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return versions


def _plugin_packages() -> tuple[str, ...]:
    return tuple(sorted({p.package for p in loaded_plugins() if p.package not in ("?", "compressor")}))


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment(device: torch.device | None = None, precision: str | None = None, world_size: int = 1
                ) -> dict[str, Any]:
    """What a run ran on: CPUs, torch threads, device, package versions (with plugins'), git commit."""
    import torch

    from compressor.core.limits import cpu_count, cpu_quota
    from compressor.core.threads import current

    chosen = current()
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None
    device = device or torch.device("cpu")
    gpu = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        gpu = {"name": props.name, "memory_bytes": int(props.total_memory),
               "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
               "count": torch.cuda.device_count()}
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": {
            "model": _cpu_model(),
            "usable": cpu_count(),  # affinity, bounded by a container's CPU quota
            "machine": os.cpu_count(),
            "quota": cpu_quota(),
        },
        "torch_threads": {
            "intra_op": torch.get_num_threads(),
            "inter_op": torch.get_num_interop_threads(),
            "source": chosen.source if chosen is not None else None,
        },
        "device": {"type": device.type, "name": gpu["name"] if gpu else _cpu_model(), "precision": precision,
                   "processes": world_size, "gpu": gpu},
        "cuda_available": torch.cuda.is_available(),
        "packages": package_versions(_plugin_packages()),
        "git_commit": commit,
        "git_dirty": dirty,
        "argv": sys.argv,
        "time": dt.datetime.now().isoformat(timespec="seconds"),
    }


class MetricsWriter:
    """Appends metric records to ``metrics.jsonl`` and sends them, with the spec and the plots, to the
    experiment trackers ``tracking`` names (:mod:`compressor.run.tracking`: TensorBoard, Weights & Biases)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tracking: Iterable[str] = ()) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.count = self._complete_lines() if enabled else 0  # records written; checkpoints store it
        self._trackers: list[Any] = []
        if enabled and tracking:
            self._trackers = open_trackers(run_dir, tracking)

    def write(self, record: dict[str, Any], global_step: int | None = None) -> None:
        if not self.enabled:
            return
        try:
            with deferred(), open(self.path, "a", encoding="utf-8") as f:  # whole lines, counted
                f.write(json.dumps(record, sort_keys=False) + "\n")
        except OSError as e:  # a full disk: the cut line is dropped on resume (lines are counted)
            raise_disk_error(e, self.path)
            raise
        self.count += 1
        for tracker in self._trackers:
            tracker.log(record)

    def log_spec(self, spec: dict[str, Any], text: str) -> None:
        """The spec as run, to every tracker."""
        for tracker in self._trackers:
            tracker.log_spec(spec, text)

    def log_plots(self, paths: list[Path]) -> None:
        """The run's plots (PNG files), to every tracker."""
        for tracker in self._trackers:
            tracker.log_plots(paths)

    def _complete_lines(self) -> int:
        if not self.path.exists():
            return 0
        return self.path.read_bytes().count(b"\n")

    def truncate_to(self, count: int) -> None:
        """Keep the first ``count`` records: the log as it was when a checkpoint stored ``self.count``."""
        if not self.path.exists():
            self.count = 0
            return
        lines = self.path.read_text(encoding="utf-8").split("\n")[:-1]  # a line cut by a kill has no newline
        self._replace(lines[:count])

    def _replace(self, lines: list[str]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            with deferred():
                tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
                tmp.replace(self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.count = len(lines)

    def truncate_after(self, stage_index: int, step: int) -> None:
        """Drop records a killed run wrote after its resume point (for checkpoints that did not store the
        record count): every record of a later position and the final evaluation's records."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            if not isinstance(rec, dict) or rec.get("type") == "final":
                continue
            if "stage_index" not in rec:
                keep.append(line)
                continue
            later = rec["stage_index"] > stage_index or (rec["stage_index"] == stage_index
                                                         and rec.get("step", 0) > step)
            if not later:
                keep.append(line)
        self._replace(keep)

    def close(self) -> None:
        for tracker in self._trackers:
            tracker.close()
        self._trackers = []
