"""Resuming a killed run: its directory locked and cleaned, its own spec, its last checkpoint checked.

``compressor run --resume RUN_DIR`` continues with the spec the run started with (``resolved_spec.yaml``). A
SPEC or ``--set`` given with it must not change that spec: the first difference is named and the resume is
refused (the original command line, unchanged, is accepted).

Every checkpoint records the spec it was written under (:func:`spec_stamp`: its SHA-256 and the spec itself). A
``resolved_spec.yaml`` edited since is refused, listing the keys that differ, unless ``--accept-spec-change`` is
given: the change is then recorded in ``RUN_DIR/spec_changes.jsonl`` and the run goes on with the edited spec.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from compressor.core.checkpoint import check_resume_state, load_checkpoint
from compressor.core.errors import SpecError, UserError, format_path
from compressor.core.registry import Registry
from compressor.core.rundir import SPEC_FILE, RunLock, clean_stale_temporaries, is_run_dir
from compressor.spec import LoadedSpec, apply_overrides, dump_spec, load_spec, read_yaml

SPEC_CHANGES = "spec_changes.jsonl"


def _canonical(raw: Any) -> str:
    """The spec as ``resolved_spec.yaml`` holds it (a YAML round trip), as sorted JSON, without
    ``trainer.threads``: a setting of the machine (``--threads`` overrides it), not of the run."""
    import yaml

    spec = yaml.safe_load(dump_spec(raw))
    if isinstance(spec, dict) and isinstance(spec.get("trainer"), dict):
        spec["trainer"].pop("threads", None)
    return json.dumps(spec, sort_keys=True, default=str)


def spec_stamp(raw: Any) -> dict[str, str]:
    """What a checkpoint records of the spec it was written under: its SHA-256 and the spec (as JSON)."""
    text = _canonical(raw)
    return {"spec_sha256": hashlib.sha256(text.encode()).hexdigest(), "spec_json": text}


def open_resume(resume_dir: Path, spec_path: str | Path | None, overrides: list[str], registry: Registry,
                stack: contextlib.ExitStack, accept_spec_change: bool = False
                ) -> tuple[LoadedSpec, dict[str, Any] | None]:
    """Lock a killed run's directory, clean what its writers left, load its spec and resume point.

    A spec edited since the last checkpoint is refused (exit 2, the keys that differ named) unless
    ``accept_spec_change``, which records the change in ``RUN_DIR/spec_changes.jsonl``.
    """
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
        _check_spec_unchanged(resume_dir, loaded, state, accept_spec_change)
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
    diffs = _differences(given, run_raw)
    if not diffs:
        return
    path, here, there = diffs[0]
    raise UserError(f"--resume {resume_dir} continues the run with the spec it started with "
                    f"({resume_dir / SPEC_FILE}), but {origin} differs at {format_path(path)} "
                    f"({here!r} here, {there!r} in the run): resume with 'compressor run --resume {resume_dir}' "
                    f"alone, or start a new run")


def _check_spec_unchanged(resume_dir: Path, loaded: LoadedSpec, state: dict[str, Any], accept: bool) -> None:
    """Compare the run's spec now with the one its last checkpoint was written under."""
    recorded = state.get("spec_sha256")
    if not isinstance(recorded, str):
        return  # a checkpoint written before specs were recorded
    now = spec_stamp(loaded.raw)
    if now["spec_sha256"] == recorded:
        return
    try:
        before = json.loads(state.get("spec_json") or "null")
    except ValueError:
        before = None
    diffs = _differences(json.loads(now["spec_json"]), before) if isinstance(before, dict) else []
    keys = [format_path(p) for p, _, _ in diffs]
    listed = ", ".join(f"{format_path(p)} ({b!r} -> {a!r})" for p, a, b in diffs[:8])
    listed += f" and {len(diffs) - 8} more" if len(diffs) > 8 else ""
    if not accept:
        raise UserError(f"--resume {resume_dir}: {resume_dir / SPEC_FILE} was changed after the run's last "
                        f"checkpoint ({listed or 'its hash differs'}); resuming would mix two specs: restore it, "
                        f"start a new run, or pass --accept-spec-change to go on with the edited spec (the change "
                        f"is recorded in {SPEC_CHANGES})")
    with open(resume_dir / SPEC_CHANGES, "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from_sha256": recorded,
                            "to_sha256": now["spec_sha256"], "keys": keys,
                            "changes": [{"key": k, "before": b, "after": a} for k, (_, a, b) in zip(keys, diffs)]},
                           default=str) + "\n")
    from compressor.core.progress import say

    say(f"resuming with a changed spec ({', '.join(keys) or 'hash differs'}), recorded in "
        f"{resume_dir / SPEC_CHANGES}")


def _differences(a: Any, b: Any, path: tuple = ()) -> list[tuple[tuple, Any, Any]]:
    """Every key path where ``a`` and ``b`` differ, with the two values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            out += _differences(a.get(key, _ABSENT), b.get(key, _ABSENT), path + (key,))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, path + (i,))]
    return [] if a == b and type(a) is type(b) else [(path, a, b)]


_ABSENT = "<absent>"
