"""Side-by-side latency and real-time factor on one thread, and the report plot."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch


def timed(fn: Callable[[], Any], repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls (seconds), after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


class one_thread:
    """Context: torch uses a single intra-op thread (restored afterwards)."""

    def __enter__(self) -> None:
        self.prev = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.prev)


def file_size(paths: Sequence[Path]) -> int:
    return sum(Path(p).stat().st_size for p in paths)


def plot_report(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Bars of size (MB), latency per utterance (ms) and RTF for each variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    metrics = [("size_mb", "size (MB)"), ("latency_ms", "latency / utterance (ms, 1 thread)"),
               ("rtf", "real-time factor (1 thread)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    colors = ["#7f7f7f", "#1f77b4", "#2ca02c", "#d62728", "#9467bd"]
    for ax, (key, label) in zip(axes, metrics):
        vals = [r.get(key) if r.get(key) is not None else 0.0 for r in rows]
        ax.bar(range(len(names)), vals, color=colors[: len(names)])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def row(name: str, model: Any, files: list[Path] | None, seconds_total: float, n: int,
        audio_seconds: float) -> dict[str, Any]:
    """One latency row: parameters and size of a PyTorch model, or the size of ONNX files."""
    if model is not None:
        params = sum(p.numel() for p in model.parameters())
        size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    else:
        params = None
        size = file_size(files or [])
    return {"variant": name, "params": params, "size_mb": size / 1e6,
            "latency_ms": 1000 * seconds_total / max(1, n), "rtf": seconds_total / max(1e-9, audio_seconds)}
