"""``compressor export RUN_DIR [--model NAME] [--out DIR] [--force]``: export a finished run's model.

Where an export may be written (checked before any work):

* never over, around or beside a run's own files: ``--out`` may not be a run directory, a folder holding
  one, or anything inside a run directory except that run's own ``export/`` folder;
* an existing ``--out`` must be an empty folder, or a previous export (recognised by its
  ``export_manifest.json``) that ``--force`` replaces; a folder holding anything else is never replaced;
* files are written into a temporary ``.<out>.tmp-<pid>`` folder beside ``--out`` and moved into place
  when complete; every failure removes it, and temporaries a killed export left behind are removed by the
  next export to the same place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from compressor.core.errors import UserError
from compressor.core.interrupts import pid_alive
from compressor.core.rundir import enclosing_run_dir

MANIFEST = "export_manifest.json"
PRODUCER = "compressor export"


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def write_manifest(folder: Path, run_dir: Path | None, model: str, exporter: str) -> Path:
    """List every file of a finished export (size, SHA-256) in ``folder/export_manifest.json``."""
    files = []
    for rel in _files(folder):
        data = (folder / rel).read_bytes()
        files.append({"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"producer": PRODUCER, "version": 1, "run_dir": str(Path(run_dir).resolve()) if run_dir else None,
                "model": model, "exporter": exporter, "created": dt.datetime.now().isoformat(timespec="seconds"),
                "files": files}
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a previous export in ``folder``, or None when ``folder`` is not one."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("producer") != PRODUCER:
        return None
    return manifest


def _check_replaceable(out: Path, force: bool) -> None:
    """``out`` may be written: absent, an empty folder, or (with ``force``) a previous export and nothing more."""
    if not (out.exists() or out.is_symlink()):
        existing = out.parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise UserError(f"--out {out}: cannot create it, {existing} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"--out {out}: {existing} is not writable")
        return
    if not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if not any(out.iterdir()):
        return
    manifest = read_manifest(out)
    if manifest is None:
        raise UserError(f"--out {out} holds files that are not an export (no {MANIFEST}); compressor only "
                        f"replaces its own exports: choose a new or empty folder")
    if not force:
        raise UserError(f"output directory {out} exists; pass --force to replace it (it is a previous export)")
    listed = {f.get("path") for f in manifest.get("files", []) if isinstance(f, dict)} | {MANIFEST}
    extra = [f for f in _files(out) if f not in listed]
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise UserError(f"--out {out} is a previous export but also holds files it did not write ({shown}); "
                        f"move them before replacing it")


def check_export_target(run_dir: Path, out: Path, force: bool) -> Path:
    """Refuse an export target that would write into, over or beside a run's files; return it resolved."""
    run = Path(run_dir).resolve()
    target = Path(out).expanduser().resolve()
    if target == run or target in run.parents:
        raise UserError(f"--out {out} would replace the run directory {run_dir}"
                        + ("" if target == run else " (it holds the run)"))
    owner = enclosing_run_dir(target)
    if owner is not None and target != owner / "export":
        raise UserError(f"--out {out} lies inside the run directory {owner}: only its export/ folder may be "
                        f"written there")
    if owner is not None and owner != run:
        raise UserError(f"--out {out} is the export folder of another run ({owner})")
    _check_replaceable(target, force)
    return target


_TMP = re.compile(r"^\.(?P<name>.+)\.(tmp|old)-(?P<pid>\d+)$")


def claim_export_dir(out: Path, force: bool) -> Path:
    """Check ``out`` once more, remove temporaries killed exports left beside it, make a fresh temp folder."""
    _check_replaceable(out, force)
    parent = out.parent
    if parent.is_dir():
        for p in parent.iterdir():
            m = _TMP.match(p.name)
            if not m or m.group("name") != out.name or int(m.group("pid")) == os.getpid():
                continue
            if pid_alive(int(m.group("pid"))):
                raise UserError(f"another export into {out} is in progress (PID {m.group('pid')})")
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
    except OSError as e:  # /proc, a read-only or full file system, no permission
        raise UserError(f"--out {out}: cannot create a folder there ({e.strerror or e})") from None
    return tmp


def export_model_name(run_dir: Path) -> str:
    """The model a run's spec exports (its ``export.model``, default ``student``), read without building it."""
    from compressor.spec import read_yaml

    raw, _ = read_yaml(Path(run_dir) / "resolved_spec.yaml")
    export = raw.get("export") if isinstance(raw, dict) else None
    name = export.get("model") if isinstance(export, dict) else None
    return name if isinstance(name, str) else "student"
