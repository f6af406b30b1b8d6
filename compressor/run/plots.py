"""PNG plots of a run's metrics: ``overview.png`` (losses, LR, scheduled values and validation metrics on one
page) and one PNG per logged series.

Choices that make them readable:

* x is the optimizer step over the whole run; each stage is shaded and named, its boundaries marked;
* a loss whose values span more than :data:`LOG_SPAN` (a spike of 540 above a converged 2) is drawn on a log
  axis, so the converged region stays visible;
* noisy per-step series are drawn faint with a running mean over them;
* a series that repeats another is left out: ``loss/total`` when the task loss is the only term, a weight that
  a strategy also logs under its own name (``weight/logit_kd`` and ``kd_weight``), a metric that is another's
  complement (``valid/error_rate`` = 1 - ``valid/accuracy``);
* a weight or scheduled value that stays constant over the run is not drawn (a flat line says nothing its
  value in ``resolved_spec.yaml`` does not).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from compressor.core.rundir import read_metrics

_SKIP = {"stage", "stage_index", "step", "epoch", "time", "type", "best", "model", "global_step"}
#: max / min of a positive series beyond which its axis is logarithmic
LOG_SPAN = 30.0
#: points from which a per-step series gets a running mean
SMOOTH_FROM = 40

Points = list[tuple[int, float]]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def collect(records: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Points]], list[tuple[str, int, int]]]:
    """Series (name -> stage -> points, x = step over the whole run) and the stages' spans ``(name, x0, x1)``."""
    offsets, spans = stage_offsets(records)
    series: dict[str, dict[str, Points]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        if "stage_index" not in rec or rec.get("type") == "final":
            continue
        x = offsets.get(str(rec.get("stage", rec["stage_index"])), 0) + int(rec.get("step", 0))
        for key, value in rec.items():
            if key in _SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(float(value)):
                continue
            series[key][rec["stage"]].append((x, float(value)))
    return _without_repeats(series), spans


def _flat(by_stage: dict[str, Points]) -> Points:
    return sorted(p for points in by_stage.values() for p in points)


def _without_repeats(series: dict[str, dict[str, Points]]) -> dict[str, dict[str, Points]]:
    """Drop series that repeat another exactly: a named scalar beats ``loss/...``, which beats ``weight/...``;
    ``loss/total`` goes when it equals the only loss term."""
    def rank(name: str) -> tuple[int, str]:
        if name == "loss/total":
            return (3, name)
        if name.startswith("weight/"):
            return (2, name)
        if name.startswith("loss/"):
            return (1, name)
        return (0, name)

    kept: dict[str, dict[str, Points]] = {}
    seen: dict[tuple, str] = {}
    for name in sorted(series, key=rank):
        flat = tuple(_flat(series[name]))
        key = tuple((x, round(y, 9)) for x, y in flat)
        complement = tuple((x, round(1.0 - y, 9)) for x, y in flat)
        if key in seen or (_is_eval(name) and seen.get(complement, "").split("/")[0] == name.split("/")[0]):
            continue
        if not name.startswith("loss/") and not _is_eval(name) and len({y for _, y in key}) == 1:
            continue  # a constant weight or scheduled value
        seen[key] = name
        kept[name] = series[name]
    return kept


def log_scale(values: list[float]) -> bool:
    """Whether a series spans so much (all positive, max/min > LOG_SPAN) that a log axis shows it better."""
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and len(values) > 2 and max(positive) / min(positive) > LOG_SPAN


def running_mean(ys: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, y in enumerate(ys):
        total += y
        if i >= window:
            total -= ys[i - window]
        out.append(total / min(i + 1, window))
    return out


def noisy(ys: list[float]) -> bool:
    """Whether a series jumps up and down from step to step (a loss), rather than following a curve (an LR)."""
    diffs = [b - a for a, b in zip(ys, ys[1:]) if b != a]
    if len(diffs) < SMOOTH_FROM // 2:
        return False
    turns = sum(1 for a, b in zip(diffs, diffs[1:]) if (a > 0) != (b > 0))
    return turns > 0.3 * len(diffs)


def draw_stages(ax: Any, spans: list[tuple[str, int, int]], label: bool = True, fit: bool = True) -> None:
    """Shade every other stage, mark the boundaries, name the stages above the axes; ``fit`` sets the x range
    to the run's steps."""
    if spans and fit:
        ax.set_xlim(spans[0][1], max(spans[-1][2], spans[0][1] + 1))
    for i, (name, x0, x1) in enumerate(spans):
        if i % 2:
            ax.axvspan(x0, x1, color="0.93", zorder=0, linewidth=0)
        if i:
            ax.axvline(x0, color="0.6", linestyle="--", linewidth=0.8, zorder=1)
        if label:
            ax.text((x0 + x1) / 2, 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=7, color="0.35", clip_on=False)


def _draw_series(ax: Any, by_stage: dict[str, Points], color: Any = None, label: str | None = None,
                 evaluation: bool = False, linestyle: str = "-") -> None:
    flat = _flat(by_stage)
    if not flat:
        return
    xs, ys = zip(*flat)
    if evaluation or len(flat) < SMOOTH_FROM:
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, color=color, label=label, linestyle=linestyle)
    elif not noisy(list(ys)):
        ax.plot(xs, ys, linewidth=1.4, color=color, label=label, linestyle=linestyle)
    else:
        line = ax.plot(xs, ys, linewidth=0.6, alpha=0.3, color=color, linestyle=linestyle)[0]
        window = max(5, len(flat) // 50)
        ax.plot(xs, running_mean(list(ys), window), linewidth=1.4, color=line.get_color(), linestyle=linestyle,
                label=f"{label} (mean of {window})" if label else f"mean of {window} steps")


def _values(*groups: dict[str, Points]) -> list[float]:
    return [y for by_stage in groups for points in by_stage.values() for _, y in points]


def _is_eval(name: str) -> bool:
    return "/" in name and not name.startswith(("loss/", "weight/"))


def write_plots(run_dir: Path) -> list[Path]:
    """``overview.png`` and one PNG per logged series in ``RUN_DIR/plots``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(exist_ok=True)
    series, spans = collect(records)
    written = []
    for key, by_stage in sorted(series.items()):
        fig, ax = plt.subplots(figsize=(7.5, 3.8))
        own, alone = split_alone(by_stage)
        _draw_series(ax, own, label=key if alone else None, evaluation=_is_eval(key))
        if alone:
            _draw_series(ax, alone, label=f"{key}, the student trained alone", evaluation=_is_eval(key),
                         linestyle="--")
            ax.legend(fontsize=7)
        if log_scale(_values(by_stage)):
            ax.set_yscale("log")
        draw_stages(ax, spans)
        ax.set_xlabel("optimizer step (whole run)")
        ax.set_ylabel(key + (" (log scale)" if ax.get_yscale() == "log" else ""))
        ax.set_title(key, pad=14)
        ax.grid(alpha=0.3, which="both" if ax.get_yscale() == "log" else "major")
        fig.tight_layout()
        path = out_dir / f"{_safe(key)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if series:
        run_dir = Path(run_dir)
        written.append(write_overview(series, spans, out_dir / "overview.png",
                                      f"{run_dir.parent.name} / {run_dir.name}"))
    return written


def panels(series: dict[str, dict[str, Points]]) -> list[tuple[str, list[str]]]:
    """The overview's panels: losses, validation metrics, learning rate, scheduled values (those present)."""
    losses = [k for k in series if k.startswith("loss/")]
    evals = [k for k in series if _is_eval(k) and not k.endswith("/loss")]
    eval_losses = [k for k in series if _is_eval(k) and k.endswith("/loss")]
    scheduled = [k for k in series if k not in losses + evals + eval_losses and k != "lr"]
    out = [("training losses", sorted(losses)), ("validation metrics", sorted(evals)),
           ("validation loss", sorted(eval_losses)), ("learning rate", ["lr"] if "lr" in series else []),
           ("scheduled values", sorted(scheduled))]
    return [(title, keys) for title, keys in out if keys]


def write_overview(series: dict[str, dict[str, Points]], spans: list[tuple[str, int, int]], path: Path,
                   title: str) -> Path:
    """One page: a panel per group of series (see :func:`panels`), stages shaded in each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = panels(series)
    cols = 2 if len(groups) > 1 else 1
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.3 * rows), squeeze=False)
    for ax, (name, keys) in zip(axes.flat, groups):
        for key in keys:
            own, alone = split_alone(series[key])
            _draw_series(ax, own, label=key, evaluation=_is_eval(key))
            if alone:
                _draw_series(ax, alone, label=f"{key} (trained alone)", evaluation=_is_eval(key), linestyle="--")
        if log_scale(_values(*(series[k] for k in keys))):
            ax.set_yscale("log")
        draw_stages(ax, spans)
        ax.set_title(name + (" (log scale)" if ax.get_yscale() == "log" else ""), fontsize=10, pad=14)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        ax.set_xlabel("optimizer step", fontsize=8)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


ALONE = "_alone"


def stage_offsets(records: list[dict[str, Any]]) -> tuple[dict[str, int], list[tuple[str, int, int]]]:
    """Each stage's first step on the run's x axis, by stage name in the order the stages ran, and the spans
    ``(name, x0, x1)``. The stages of the student trained alone (``<stage>_alone``, which reuse their indices)
    lie over the stage they repeat, so the two curves compare step for step; they have no span of their own."""
    last: dict[str, int] = {}
    for rec in records:
        if "stage_index" in rec:
            name = str(rec.get("stage", rec["stage_index"]))
            last[name] = max(last.get(name, 0), int(rec.get("step", 0)))
    offsets, spans, total = {}, [], 0
    for name, steps in last.items():
        if name.endswith(ALONE) and name[: -len(ALONE)] in offsets:
            offsets[name] = offsets[name[: -len(ALONE)]]
            continue
        offsets[name] = total
        spans.append((name, total, total + steps))
        total += steps
    return offsets, spans


def split_alone(by_stage: dict[str, Points]) -> tuple[dict[str, Points], dict[str, Points]]:
    """A series' points of the run's own stages, and those of the student trained alone (``<stage>_alone``)."""
    own = {k: v for k, v in by_stage.items() if not k.endswith(ALONE)}
    return own, {k: v for k, v in by_stage.items() if k.endswith(ALONE)}
