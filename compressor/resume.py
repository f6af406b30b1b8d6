"""Resuming a killed run: its directory locked and cleaned, its own spec, its last checkpoint checked.

``compressor run --resume RUN_DIR`` continues with the spec the run started with (``resolved_spec.yaml``). A
SPEC or ``--set`` given with it must not change that spec: the first difference is named and the resume is
refused (the original command line, unchanged, is accepted).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from compressor.checkpoint import check_resume_state, load_checkpoint
from compressor.errors import SpecError, UserError, format_path
from compressor.registry import Registry
from compressor.rundir import SPEC_FILE, RunLock, clean_stale_temporaries, is_run_dir
from compressor.spec import LoadedSpec, apply_overrides, load_spec, read_yaml


def open_resume(resume_dir: Path, spec_path: str | Path | None, overrides: list[str], registry: Registry,
                stack: contextlib.ExitStack) -> tuple[LoadedSpec, dict[str, Any] | None]:
    """Lock a killed run's directory, clean what its writers left, load its spec and resume point."""
    if not resume_dir.is_dir():
        raise UserError(f"--resume {resume_dir}: no such directory")
    if not is_run_dir(resume_dir):
        raise UserError(f"--resume {resume_dir}: not a run directory (no {SPEC_FILE})")
    if (resume_dir / "final" / "COMPLETE").exists():
        raise UserError(f"--resume {resume_dir}: this run already finished")
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: rank 0 holds the lock
        stack.enter_context(RunLock(resume_dir, "resume it"))
        clean_stale_temporaries(resume_dir)
    spec_file = resume_dir / SPEC_FILE
    if spec_path is not None or overrides:
        _same_spec(resume_dir, spec_path, overrides)
    loaded = load_spec(spec_file, registry=registry, check_machine=False)  # checked at its start
    last = resume_dir / "checkpoints" / "last.pt"
    state = None
    if last.exists():
        state = check_resume_state(load_checkpoint(last), last, len(loaded.spec.stages))
    if loaded.spec.export is not None and loaded.spec.export.enabled and (resume_dir / "export").exists():
        from compressor.export.api import check_export_target

        check_export_target(resume_dir, resume_dir / "export", force=True)
    return loaded, state


def _same_spec(resume_dir: Path, spec_path: str | Path | None, overrides: list[str]) -> None:
    """A resumed run keeps the spec it started with: refuse a SPEC or ``--set`` that would change it."""
    run_raw, _ = read_yaml(resume_dir / SPEC_FILE)
    if spec_path is not None:
        given, _ = read_yaml(spec_path)
        if not isinstance(given, dict):
            raise SpecError("the spec must be a mapping of keys to values", file=str(spec_path))
        origin = f"{spec_path}{' with --set' if overrides else ''}"
    else:
        given, origin = run_raw, "--set"
    given = apply_overrides(given, overrides)
    diff = _first_difference(given, run_raw)
    if diff is None:
        return
    path, here, there = diff
    raise UserError(f"--resume {resume_dir} continues the run with the spec it started with "
                    f"({resume_dir / SPEC_FILE}), but {origin} differs at {format_path(path)} "
                    f"({here!r} here, {there!r} in the run): resume with 'compressor run --resume {resume_dir}' "
                    f"alone, or start a new run")


_ABSENT = "<absent>"


def _first_difference(a: Any, b: Any, path: tuple = ()) -> tuple[tuple, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key, _ABSENT), b.get(key, _ABSENT), path + (key,))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, path + (i,))
            if found:
                return found
        return None
    return None if a == b and type(a) is type(b) else (path, a, b)
