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
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from compressor.core.errors import UserError

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
