"""``compressor compare RUN_DIR RUN_DIR ...``: several runs side by side.

* a markdown table, one row per evaluated model of each run: parameters, final metrics, export sizes (fp32 and
  int8) and training time; printed, and written to ``DIR/compare.md``;
* one PNG, ``DIR/compare.png``: training loss and the validation metric of every run against optimizer steps
  (stages shaded for the first run), and the final metric against parameters (the size/quality picture).

Runs that have not finished are compared on what they logged so far (final metrics shown as ``-``). Like every
output of compressor, ``DIR`` may not lie inside a run directory, and files are written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compressor.errors import UserError
from compressor.plots import draw_stages, log_scale, noisy, running_mean, stage_offsets
from compressor.progress import duration
from compressor.report import markdown_table
from compressor.rundir import SPEC_FILE, enclosing_run_dir, is_run_dir, read_metrics


@dataclass
class RunInfo:
    """What compare reads from one run directory."""

    path: Path
    name: str
    finished: bool
    results: dict[str, Any]
    records: list[dict[str, Any]]
    metric: str | None = None
    split: str = "valid"
    export: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def read_run(path: Path) -> RunInfo:
    """A run directory's spec name, results, metrics and export report; :class:`UserError` if it is none."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"run directory not found: {path}")
    if not is_run_dir(path):
        raise UserError(f"{path} is not a run directory (no {SPEC_FILE})")
    try:
        spec = yaml.safe_load((path / SPEC_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"{path / SPEC_FILE} cannot be read: {str(e).splitlines()[0]}") from None
    complete = path / "final" / "COMPLETE"
    results: dict[str, Any] = {}
    if complete.exists():
        try:
            results = json.loads(complete.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            results = {}
    records = read_metrics(path)
    stages = results.get("stages") or []
    metric = next((st.get("metric") for st in reversed(stages) if st.get("metric")), None)
    split = "valid"
    eval_keys = [k for r in records if r.get("type") == "eval" for k in r if "/" in k]
    if eval_keys:
        split = eval_keys[-1].split("/", 1)[0]
        if metric is None:
            names = [k.split("/", 1)[1] for k in eval_keys]
            metric = next((m for m in ("wer", "accuracy") if m in names), names[0])
    export = (results.get("export") or {}).get("report") or {}
    if not export and (path / "export" / "export_report.json").exists():
        try:
            export = json.loads((path / "export" / "export_report.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            export = {}
    name = str(spec.get("name", path.parent.name)) if isinstance(spec, dict) else path.parent.name
    return RunInfo(path, name, complete.exists(), results, records, metric, split, export)


def _labels(runs: list[RunInfo]) -> None:
    names = [r.name for r in runs]
    for r in runs:
        r.label = r.name if names.count(r.name) == 1 else f"{r.name}/{r.path.name}"


def _export_sizes(run: RunInfo, model: str) -> tuple[float | None, float | None]:
    """fp32 and int8 sizes (MB) of ``model``'s export, when it was exported (and int8 kept)."""
    report = run.export
    if not report or report.get("model", "student") != model:
        return None, None
    q = report.get("int8") or {}
    fp32 = q.get("size_fp32")
    int8 = q.get("size_int8") if q.get("kept") else None
    if fp32 is None:
        for row in (report.get("benchmark") or {}).get("rows") or []:
            if "fp32" in str(row.get("variant", "")) or "ONNX" in str(row.get("variant", "")):
                return row.get("size_mb"), None
        return None, None
    return fp32 / 1e6, (int8 / 1e6 if int8 is not None else None)


def table(runs: list[RunInfo]) -> str:
    """The markdown table: one row per evaluated model of each run."""
    metrics = list(dict.fromkeys(k for r in runs for m in (r.results.get("final") or {}).values() for k in m))
    mains = {r.metric for r in runs if r.metric}
    metrics.sort(key=lambda k: k.split("/", 1)[-1] not in mains)  # each run's main metric first
    headers = ["run", "model", "parameters", *metrics, "ONNX fp32 (MB)", "ONNX int8 (MB)", "training time"]
    rows = []
    for r in runs:
        final = r.results.get("final") or {}
        params = r.results.get("parameters") or {}
        seconds = sum(st.get("seconds") or 0 for st in r.results.get("stages") or []) or None
        models = list(final) or ["(unfinished)"]
        for model in models:
            fp32, int8 = _export_sizes(r, model)
            rows.append([r.label, model, params.get(model), *(final.get(model, {}).get(k) for k in metrics),
                         fp32, int8, duration(seconds) if seconds else None])
    return markdown_table(headers, rows)


def _curve(records: list[dict[str, Any]], key: str, evaluation: bool) -> tuple[list[int], list[float]]:
    offsets, _ = stage_offsets(records)
    xs, ys = [], []
    for rec in records:
        if "stage_index" not in rec or (rec.get("type") == "eval") != evaluation or rec.get("type") == "final":
            continue
        value = rec.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            xs.append(offsets.get(rec["stage_index"], 0) + int(rec.get("step", 0)))
            ys.append(float(value))
    return xs, ys


def plot(runs: list[RunInfo], path: Path) -> Path:
    """Training loss, validation metric and final metric against parameters, every run in its colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.4))
    loss_ax, val_ax, size_ax = axes
    all_loss: list[float] = []
    for i, r in enumerate(runs):
        color = f"C{i % 10}"
        key = "loss/total" if any("loss/total" in rec for rec in r.records) else "loss/task"
        xs, ys = _curve(r.records, key, evaluation=False)
        if xs:
            if noisy(ys):
                loss_ax.plot(xs, ys, color=color, linewidth=0.5, alpha=0.25)
                window = max(5, len(ys) // 50)
                ys = running_mean(ys, window)
            loss_ax.plot(xs, ys, color=color, linewidth=1.4, label=r.label)
            all_loss += ys
        if r.metric:
            vx, vy = _curve(r.records, f"{r.split}/{r.metric}", evaluation=True)
            if vx:
                val_ax.plot(vx, vy, color=color, marker="o", markersize=3, label=f"{r.label} ({r.metric})")
        final = r.results.get("final") or {}
        params = r.results.get("parameters") or {}
        for model, values in final.items():
            value = next((v for k, v in values.items() if r.metric and k.endswith(f"/{r.metric}")), None)
            if value is not None and params.get(model):
                size_ax.scatter(params[model], value, color=color, marker="o" if model == "student" else "s", s=40)
                size_ax.annotate(f"{r.label}: {model}", (params[model], value), fontsize=7,
                                 xytext=(4, 4), textcoords="offset points")
    if log_scale(all_loss):
        loss_ax.set_yscale("log")
    spans = [stage_offsets(r.records)[1] for r in runs]
    if spans and spans[0] and all(s == spans[0] for s in spans):  # the same stages: shade them
        for ax in (loss_ax, val_ax):
            draw_stages(ax, spans[0])
    metrics = sorted({r.metric for r in runs if r.metric})
    loss_ax.set_title("training loss (running mean)" + (", log scale" if loss_ax.get_yscale() == "log" else ""),
                      fontsize=10, pad=14)
    val_ax.set_title(f"validation {' / '.join(metrics) or 'metric'}", fontsize=10, pad=14)
    size_ax.set_title(f"final {' / '.join(metrics) or 'metric'} against parameters", fontsize=10, pad=14)
    size_ax.set_xscale("log")
    size_ax.margins(x=0.35, y=0.12)
    size_ax.set_xlabel("parameters (log scale; o student, s other models)")
    for ax in (loss_ax, val_ax):
        ax.set_xlabel("optimizer step (whole run)")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def _check_out(out: Path) -> Path:
    target = Path(out).expanduser()
    owner = enclosing_run_dir(target if target.exists() else target.parent)
    if owner is not None:
        raise UserError(f"--out {out} lies inside the run directory {owner}: comparisons go outside run "
                        f"directories")
    if target.exists() and not target.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    return target


def compare_runs(run_dirs: list[Path], out: Path, metric: str | None = None) -> int:
    """What ``compressor compare`` does; returns the exit code."""
    target = _check_out(out)
    runs = [read_run(d) for d in run_dirs]
    if metric is not None:
        for r in runs:
            r.metric = metric
    _labels(runs)
    text = table(runs)
    unfinished = [r.label for r in runs if not r.finished]
    target.mkdir(parents=True, exist_ok=True)
    md = target / "compare.md"
    lines = ["# Runs compared", "", *(f"- `{r.label}`: `{r.path}`" for r in runs), "", text, ""]
    if unfinished:
        lines += [f"Not finished (compared on the metrics logged so far): {', '.join(unfinished)}.", ""]
    lines += ["![training and validation curves, final metric against parameters](compare.png)", ""]
    tmp = md.with_name(f".{md.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text("\n".join(lines), encoding="utf-8")
        os.replace(tmp, md)
    finally:
        tmp.unlink(missing_ok=True)
    png = plot(runs, target / "compare.png")
    print(text)
    print(f"\nwritten: {md}, {png}")
    return 0
