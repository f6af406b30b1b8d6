"""``compressor eval RUN_DIR --out FILE.json``: where evaluation results may be written, and how.

The same rules as exports: never into a run directory except that run's own ``eval/`` folder, never over a
file that is not a previous ``compressor eval`` output (``--force`` replaces one of those), written through a
``.<name>.tmp-<pid>`` sibling that every failure removes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from compressor.core.errors import UserError
from compressor.core.rundir import enclosing_run_dir

PRODUCER = "compressor eval"


def _previous_output(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("producer") == PRODUCER


def check_eval_output(run_dir: Path, out: Path, force: bool) -> Path:
    """Refuse an ``--out`` that would overwrite a run's files or anything but a previous eval output."""
    run = Path(run_dir).resolve()
    target = Path(out).expanduser().resolve()
    owner = enclosing_run_dir(target.parent)
    if target == run or target in run.parents:
        raise UserError(f"--out {out} would replace the run directory {run_dir}")
    if owner is not None and (owner != run or target.parent != owner / "eval"):
        raise UserError(f"--out {out} lies inside the run directory {owner}: evaluation results go outside run "
                        f"directories, or into the evaluated run's eval/ folder")
    if target.exists() or target.is_symlink():
        if not target.is_file():
            raise UserError(f"--out {out} exists and is not a file")
        if not _previous_output(target):
            raise UserError(f"--out {out} exists and is not a previous output of compressor eval: refusing to "
                            f"replace it")
        if not force:
            raise UserError(f"--out {out} exists; pass --force to replace it")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {parent} is not a writable directory")
    return target


def write_eval_output(out: Path, run_dir: Path, split: str, results: dict[str, dict[str, float]],
                      force: bool) -> None:
    """Write ``results`` atomically to ``out`` (checked again just before, as time has passed)."""
    out = check_eval_output(run_dir, out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"producer": PRODUCER, "run_dir": str(Path(run_dir).resolve()), "split": split,
                              "created": dt.datetime.now().isoformat(timespec="seconds"), "models": results}
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(record, indent=2, default=float), encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
