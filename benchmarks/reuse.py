"""Finished runs reused by the benchmark scripts: a run's name carries a hash of its spec, so a finished run is
reused only for exactly the same settings, and an interrupted benchmark picks up where it stopped."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def hashed(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec named with a hash of its settings."""
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return dict(spec, name=f"{spec['name']}_{digest}")


def finished(work: Path, name: str) -> Path | None:
    """The newest finished run directory of the run ``name`` under ``work``, if any."""
    done = sorted((work / name).glob("*/final/COMPLETE"))
    return done[-1].parent.parent if done else None


def finished_in(folder: Path) -> list[Path]:
    """Every finished run directory (``final/COMPLETE``) directly in ``folder`` (a spec's runs, one per seed)."""
    return sorted(d for d in folder.iterdir() if (d / "final" / "COMPLETE").is_file()) if folder.is_dir() else []


def write_spec(work: Path, spec: dict[str, Any]) -> Path:
    """``spec`` (already hashed) written to ``work/specs/NAME.yaml``."""
    spec_dir = work / "specs"
    spec_dir.mkdir(parents=True, exist_ok=True)
    path = spec_dir / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def run_in_subprocess(spec: dict[str, Any], work: Path, threads: int) -> Path:
    """``compressor run`` on the hashed ``spec`` in a subprocess with ``threads`` torch threads; its run
    directory. A failed run ends the benchmark with its output's tail and the spec's path."""
    name = spec["name"]
    path = write_spec(work, spec)
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "compressor", "run", str(path)], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"run {name} failed (exit {proc.returncode}); its spec: {path}")
    found = finished(work, name)
    assert found is not None, f"{name}: no finished run directory"
    print(f"  done {name} in {time.time() - t0:.0f} s -> {found}", flush=True)
    return found
