"""Side-by-side latency and real-time factor (on the export's ``threads``, one by default), and the report
plot: quality against size and against latency for every variant, the Pareto front marked."""

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


class torch_threads:
    """Context: torch uses ``n`` intra-op threads (restored afterwards)."""

    def __init__(self, n: int = 1) -> None:
        self.n = max(1, int(n))

    def __enter__(self) -> None:
        self.prev = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.prev)


class one_thread(torch_threads):
    """Context: torch uses a single intra-op thread (restored afterwards)."""

    def __init__(self) -> None:
        super().__init__(1)


def latency_threads(requested: int) -> int:
    """Threads of the latency report: the export's ``threads``, never more than the CPUs of this process."""
    from compressor.core.limits import cpu_count

    return max(1, min(int(requested), cpu_count()))


def file_size(paths: Sequence[Path]) -> int:
    return sum(Path(p).stat().st_size for p in paths)


def pareto(points: list[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the points no other point beats on both cost (x, lower is better) and quality (y)."""
    def better(a: float, b: float) -> bool:
        return a > b if higher_is_better else a < b

    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and (better(y2, y) or y2 == y)) and (x2 < x or better(y2, y))
                        for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_report(rows: list[dict[str, Any]], path: Path, title: str, metric: str | None = None,
                higher_is_better: bool = False, threads: int = 1) -> Path:
    """Quality (``row["quality"]``: WER or accuracy) against size and against latency per variant, with the
    Pareto front (what no other variant beats on both) marked; plus the real-time factor. Rows without a
    quality figure (a teacher of another modality) are listed in the RTF panel only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plural = "s" if threads != 1 else ""
    rated = [r for r in rows if r.get("quality") is not None]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), gridspec_kw={"width_ratios": [1.15, 1.15, 0.9]})
    colors = {name: f"C{i % 10}" for i, name in enumerate(r["variant"] for r in rows)}
    shown = metric.upper() if metric in ("wer", "cer") else (metric or "quality")
    percent = metric in ("wer", "cer", "accuracy", "error_rate")
    for ax, key, label in ((axes[0], "size_mb", "size (MB)"),
                           (axes[1], "latency_ms", f"latency per utterance (ms, {threads} thread{plural})")):
        if not rated:
            ax.text(0.5, 0.5, "no quality figure per variant", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        points = [(float(r[key]), float(r["quality"])) for r in rated]
        for r, (x, y) in zip(rated, points):
            value = f"{y:.1%}" if percent else f"{y:.4g}"
            ax.scatter(x, y, s=70, color=colors[r["variant"]], zorder=3, edgecolor="white", linewidth=0.8,
                       label=f"{r['variant']}: {shown} {value}, {r['size_mb']:.3g} MB, {r['latency_ms']:.3g} ms")
        front = pareto(points, higher_is_better)
        if len(front) > 1:
            ax.step([points[i][0] for i in front], [points[i][1] for i in front], where="post", color="0.5",
                    linestyle="--", linewidth=1, zorder=2, label="Pareto front: no variant beats these on both")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "25" else ""))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel(label + " (log scale)")
        ax.set_ylabel(shown + (" (higher is better)" if higher_is_better else " (lower is better)"))
        ax.margins(x=0.3, y=0.15)
        ax.grid(alpha=0.3, which="both")
        corner = "upper left" if higher_is_better else "lower left"
        ax.text(0.02 if "left" in corner else 0.98, 0.97 if "upper" in corner else 0.03, "better",
                transform=ax.transAxes, fontsize=8, color="0.4", va="top" if "upper" in corner else "bottom")
        if percent:
            lo, hi = ax.get_ylim()
            ax.set_ylim(max(lo, -0.02), max(hi, 0.05))
            lo, hi = ax.get_ylim()
            digits = 0 if hi - lo >= 0.1 else 1 if hi - lo >= 0.01 else 2
            ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _, d=digits: f"{v:.{d}%}"))
    axes[0].set_title(f"{shown} against size", fontsize=10)
    axes[1].set_title(f"{shown} against latency", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    names = [r["variant"] for r in rows]
    rtf = [r.get("rtf") or 0.0 for r in rows]
    ax = axes[2]
    ax.barh(range(len(names)), rtf, color=[colors[n] for n in names])
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    for i, v in enumerate(rtf):
        ax.text(v, i, f" {v:.3g}", va="center", fontsize=7)
    ax.set_title(f"real-time factor ({threads} thread{plural})", fontsize=10)
    ax.set_xlabel("seconds of compute per second of audio (lower is faster)", fontsize=8)
    ax.margins(x=0.25)
    ax.xaxis.set_major_locator(plt.MaxNLocator(4))
    fig.suptitle(title, fontsize=10)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(handles)), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.06 * ((len(handles) + 2) // 3) + 0.02, 1, 1))
    else:
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
