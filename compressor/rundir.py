"""The run directory: resolved spec, environment, metrics, checkpoints, plots, summary.

Layout of ``runs/<spec name>/<timestamp>/``::

    resolved_spec.yaml   the spec after --set overrides, as run
    environment.json     python, platform, package versions, git commit, device
    metrics.jsonl        one JSON object per optimizer step and per evaluation
    checkpoints/         last.pt (resume point), <stage>-best.pt (best by the validation metric)
    final/               <model>.pt state dicts after the last stage, and COMPLETE once the run finished
    plots/               PNG plots of every loss term, the LR and every scheduled value
    summary.md           final metrics and parameter counts
    skipped.jsonl        data items skipped as unreadable or invalid
    export/              on-device files, when the spec exports
    run.lock             locked (fcntl) by the process working in the directory; holds its PID

Rules every command follows:

* one process at a time works in a run directory (:class:`RunLock`): a second ``run --resume``, or an
  ``export`` while the run is still going, is refused with the holder's PID;
* files are written atomically through ``.<name>.tmp-<pid>`` siblings; those a killed process left behind
  are removed when the next process takes the lock (:func:`clean_stale_temporaries`);
* nothing but the run's own ``export/`` folder may be written into a run directory from outside the run
  (:func:`enclosing_run_dir` finds the run a path lies in).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.errors import UserError, raise_disk_error
from compressor.interrupts import deferred

if TYPE_CHECKING:  # torch is imported where it is used: 'compressor export' refuses a bad --out before it loads
    import torch

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

SPEC_FILE = "resolved_spec.yaml"
LOCK_FILE = "run.lock"
_TMP = re.compile(r"^\..+\.(tmp|old)-\d+$")



def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """A new, empty run directory ``output_dir/name/<timestamp>`` (with ``checkpoints/``); a file system that
    refuses it (read-only, full, ``/proc``) is a :class:`UserError` naming the path and the cause."""
    base = Path(output_dir).expanduser() / name
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        base.mkdir(parents=True, exist_ok=True)
        i = 0
        while True:  # mkdir claims the name atomically: two runs started in the same second get two directories
            path = base / (stamp if i == 0 else f"{stamp}-{i}")
            try:
                path.mkdir()
                break
            except FileExistsError:
                i += 1
        try:
            (path / "checkpoints").mkdir()
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
    except OSError as e:
        raise UserError(f"output_dir {output_dir}: cannot create the run directory in {e.filename or base} "
                        f"({e.strerror or e})") from None
    return path


def is_run_dir(path: Path) -> bool:
    return (Path(path) / SPEC_FILE).is_file()


def enclosing_run_dir(path: str | Path) -> Path | None:
    """The run directory ``path`` is (or lies in), resolved; ``None`` outside any run."""
    p = Path(path).expanduser().resolve()
    for candidate in (p, *p.parents):
        if is_run_dir(candidate):
            return candidate
    return None


def clean_stale_temporaries(run_dir: Path) -> list[Path]:
    """Remove the ``.<name>.tmp-<pid>`` (and ``.old-<pid>``) files and folders killed writers left in the run
    directory, its ``checkpoints/`` and ``final/``. Call it holding the run's lock: then nobody else writes."""
    removed = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "final"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if _TMP.match(p.name) and int(p.name.rsplit("-", 1)[1]) != os.getpid():
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
    return removed


class RunLock:
    """An exclusive lock on a run directory (``run.lock``, released by the kernel if the process dies).

    ``with RunLock(run_dir, "resume"):`` raises :class:`UserError` naming the holder's PID when another process
    holds it.
    """

    def __init__(self, run_dir: Path, purpose: str = "work in it") -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(f"{self.path.parent} is in use by another compressor process (PID {holder}); "
                            f"cannot {self.purpose} until it ends") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking it would race)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


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
    from compressor.plugins import loaded_plugins

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

    from compressor.limits import cpu_count, cpu_quota
    from compressor.threads import current

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
    experiment trackers ``tracking`` names (:mod:`compressor.tracking`: TensorBoard, Weights & Biases)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tracking: Iterable[str] = ()) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.count = self._complete_lines() if enabled else 0  # records written; checkpoints store it
        self._trackers: list[Any] = []
        if enabled and tracking:
            from compressor.tracking import open_trackers

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


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out
