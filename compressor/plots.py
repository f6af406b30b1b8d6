"""PNG plots of a run's metrics: each loss term, the LR, every scheduled value, validation metrics."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from compressor.rundir import read_metrics

_SKIP = {"stage", "stage_index", "step", "epoch", "time", "type", "best", "model"}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def write_plots(run_dir: Path) -> list[Path]:
    """One PNG per logged series, x = optimizer steps over the whole run, stage boundaries marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(exist_ok=True)
    offsets, bounds = _stage_offsets(records)
    series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        if "stage_index" not in rec or rec.get("type") == "final":
            continue
        x = offsets.get(rec["stage_index"], 0) + int(rec["step"])
        for key, value in rec.items():
            if key in _SKIP or not isinstance(value, (int, float)):
                continue
            series[key][rec["stage"]].append((x, float(value)))
    written = []
    for key, by_stage in sorted(series.items()):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for stage, points in by_stage.items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=stage)
        for b in bounds:
            ax.axvline(b, color="0.75", linestyle="--", linewidth=0.8)
        ax.set_xlabel("optimizer step (whole run)")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{_safe(key)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _stage_offsets(records: list[dict[str, Any]]) -> tuple[dict[int, int], list[int]]:
    last: dict[int, int] = {}
    for rec in records:
        if "stage_index" in rec:
            last[rec["stage_index"]] = max(last.get(rec["stage_index"], 0), int(rec["step"]))
    offsets, bounds, total = {}, [], 0
    for idx in sorted(last):
        offsets[idx] = total
        total += last[idx]
        bounds.append(total)
    return offsets, bounds[:-1]
