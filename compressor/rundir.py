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
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("torch", "torchaudio", "compressor", "pluggy", "pydantic", "pyyaml", "numpy", "onnx", "onnxruntime",
            "sherpa-onnx", "transformers", "soundfile", "sentencepiece", "espeakng-loader")


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    base = Path(output_dir) / name
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = base / stamp
    i = 1
    while path.exists():
        path = base / f"{stamp}-{i}"
        i += 1
    (path / "checkpoints").mkdir(parents=True)
    return path


def environment() -> dict[str, Any]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "packages": versions,
        "git_commit": commit,
        "argv": sys.argv,
        "time": dt.datetime.now().isoformat(timespec="seconds"),
    }


class MetricsWriter:
    """Appends metric records to ``metrics.jsonl`` (and TensorBoard when it is installed)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception:  # tensorboard is optional
                self._tb = None

    def write(self, record: dict[str, Any], global_step: int | None = None) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=False) + "\n")
        if self._tb is not None and global_step is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch", "stage_index", "global_step"):
                    self._tb.add_scalar(f"{record.get('stage', '')}/{k}", v, global_step)

    def truncate_after(self, stage_index: int, step: int) -> None:
        """Drop records a killed run wrote after its last checkpoint (resume rewrites them)."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            if "stage_index" not in rec:
                keep.append(line)
                continue
            later = rec["stage_index"] > stage_index or (rec["stage_index"] == stage_index and rec["step"] > step)
            if not later:
                keep.append(line)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
        tmp.replace(self.path)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


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
