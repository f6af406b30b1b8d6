"""``compressor compare RUN_DIR RUN_DIR ...``: several runs side by side.

* a markdown table, one row per evaluated model of each run: parameters, final metrics, export sizes (fp32 and
  int8) and training time; printed, and written to ``DIR/compare.md``;
* one PNG, ``DIR/compare.png``: like is compared with like, so a row of panels per model a stage trains
  through (``teacher``, ``student``): its training loss and validation metric against the optimizer steps of
  the stages that train it (a KD run's distillation stage stands beside the baseline's student stage, not
  its teacher stage), and the final metric against parameters (the size/quality picture);
* runs are labelled by what differs between them: the spec values (``--set`` overrides included) and stages
  that are not the same in every run, listed in ``compare.md`` too.

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

from compressor.core.errors import UserError
from compressor.core.progress import duration
from compressor.core.rundir import SPEC_FILE, enclosing_run_dir, is_run_dir, read_metrics
from compressor.reporting.report import markdown_table, restated_keys
from compressor.run.plots import draw_stages, log_scale, noisy, running_mean, stage_offsets


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
    spec: dict[str, Any] = field(default_factory=dict)
    differs: list[str] = field(default_factory=list)  # what sets this run apart from the others compared


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
    return RunInfo(path, name, complete.exists(), results, records, metric, split, export,
                   spec=spec if isinstance(spec, dict) else {})


#: spec keys that say where a run went, not what it did
_NOT_A_DIFFERENCE = {"output_dir", "description", "name"}  # the name is the label already


def flat_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """``{"stages.distil.epochs": 2, "student.hidden": 8, ...}``: stages keyed by their names, so that runs
    with different stage lists still line up on the stages they share."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = value

    for key, value in spec.items():
        if key in _NOT_A_DIFFERENCE:
            continue
        if key == "stages" and isinstance(value, list):
            for st in value:
                if isinstance(st, dict):
                    walk(f"stages.{st.get('name')}", {k: v for k, v in st.items() if k != "name"})
        else:
            walk(key, value)
    return out


def _short(value: Any, limit: int = 40) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text[:-4].strip() if text.endswith("...") else text
    return text if len(text) <= limit else text[:limit - 1] + "…"


def differences(runs: list[RunInfo]) -> None:
    """Set each run's ``differs``: its stages when the stage lists differ, then every spec value (``--set``
    overrides included) that is not the same in all runs; stages only some runs have are named once, not
    key by key."""
    flats = [flat_spec(r.spec) for r in runs]
    stage_lists = [[st.get("name") for st in r.spec.get("stages") or [] if isinstance(st, dict)] for r in runs]
    shared_stages = set.intersection(*(set(s) for s in stage_lists)) if stage_lists else set()
    keys = sorted(set().union(*flats))
    for r, flat, stages in zip(runs, flats, stage_lists):
        items = []
        if any(s != stage_lists[0] for s in stage_lists):
            items.append("stages: " + " → ".join(str(s) for s in stages))
        whole = set()  # top-level sections some runs lack: named once, as a whole
        for key in keys:
            parts = key.split(".")
            if parts[0] == "stages" and len(parts) > 1 and parts[1] not in shared_stages:
                continue
            if parts[0] in whole:
                continue
            if parts[0] in r.spec and any(parts[0] not in other.spec for other in runs):
                whole.add(parts[0])
                items.append(f"{parts[0]}={_short(r.spec[parts[0]])}")
                continue
            values = [f.get(key, "<absent>") for f in flats]
            if key in flat and any(v != values[0] for v in values):
                items.append(f"{key}={_short(flat[key])}")
        r.differs = items


def _labels(runs: list[RunInfo]) -> None:
    names = [r.name for r in runs]
    for r in runs:
        r.label = r.name if names.count(r.name) == 1 else f"{r.name}/{r.path.name}"
    differences(runs)


def legend_label(run: RunInfo, limit: int = 4, width: int = 200) -> str:
    """The run's name and what differs (``tiny_kd: stages: train_teacher → distil``), at most ``limit``
    items, the rest counted, in at most ``width`` characters (one line of the figure)."""
    items = run.differs[:limit] + ([f"+{len(run.differs) - limit} more"] if len(run.differs) > limit else [])
    text = f"{run.label}: {'; '.join(items)}" if items else run.label
    return text if len(text) <= width else text[:width - 1] + "…"


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
    restated = set().union(*(r.results.get("restated_metrics") or () for r in runs))  # error_rate = 1 - accuracy
    values = [m for r in runs for m in (r.results.get("final") or {}).values()]
    metrics = [k for k in metrics if k not in restated_keys(metrics, values, restated)]
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


def stage_models(spec: dict[str, Any]) -> list[str]:
    """The model each stage trains through (``forward``, else its first ``train`` model), by stage index."""
    out = []
    for st in spec.get("stages") or []:
        st = st if isinstance(st, dict) else {}
        out.append(str(st.get("forward") or (st.get("train") or ["?"])[0]))
    return out


def model_spans(run: RunInfo) -> dict[str, list[tuple[int, str, int, int]]]:
    """Per model trained through: its stages ``(index, name, x0, x1)``, x counting the optimizer steps of the
    stages that train it (in order), so the same model lines up across runs whatever stages come before."""
    _, spans = stage_offsets(run.records)
    by_index = {}
    for rec in run.records:
        if "stage_index" in rec:
            by_index.setdefault(rec["stage_index"], str(rec.get("stage")))
    lengths = {i: x1 - x0 for i, (_, x0, x1) in zip(sorted(by_index), spans)}
    models = stage_models(run.spec)
    out: dict[str, list[tuple[int, str, int, int]]] = {}
    for i in sorted(by_index):
        model = models[i] if i < len(models) else "?"
        start = out[model][-1][3] if model in out else 0
        out.setdefault(model, []).append((i, by_index[i], start, start + lengths[i]))
    return out


def model_curve(run: RunInfo, model: str, key: str, evaluation: bool) -> tuple[list[int], list[float]]:
    """``key`` of the stages that train ``model``, against those stages' steps (see :func:`model_spans`)."""
    offsets = {i: x0 for i, _, x0, _ in model_spans(run).get(model, [])}
    xs, ys = [], []
    for rec in run.records:
        if rec.get("stage_index") not in offsets or (rec.get("type") == "eval") != evaluation:
            continue
        value = rec.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            xs.append(offsets[rec["stage_index"]] + int(rec.get("step", 0)))
            ys.append(float(value))
    return xs, ys


def plot(runs: list[RunInfo], path: Path) -> Path:
    """A row per model trained through: training loss and validation metric against that model's steps;
    beside them the final metric against parameters. Every run in its colour, labelled by what differs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    spans = [model_spans(r) for r in runs]
    order = ["student", "teacher"]
    models = sorted({m for sp in spans for m in sp}, key=lambda m: (order.index(m) if m in order else 2, m))
    rows = max(1, len(models))
    fig = plt.figure(figsize=(17, 3.6 * rows + 1.2))
    grid = fig.add_gridspec(rows, 3)
    metrics = sorted({r.metric for r in runs if r.metric})
    metric_text = " / ".join(metrics) or "metric"
    for row, model in enumerate(models):
        loss_ax, val_ax = fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1])
        all_loss: list[float] = []
        for i, r in enumerate(runs):
            color = f"C{i % 10}"
            # the task's own loss: the same definition in every run (a KD run's total adds its KD terms)
            xs, ys = model_curve(r, model, "loss/task", evaluation=False)
            if xs:
                if noisy(ys):
                    loss_ax.plot(xs, ys, color=color, linewidth=0.5, alpha=0.25)
                    ys = running_mean(ys, max(5, len(ys) // 50))
                loss_ax.plot(xs, ys, color=color, linewidth=1.4)
                all_loss += ys
            if r.metric:
                vx, vy = model_curve(r, model, f"{r.split}/{r.metric}", evaluation=True)
                if vx:
                    val_ax.plot(vx, vy, color=color, marker="o", markersize=3)
        if log_scale(all_loss):
            loss_ax.set_yscale("log")
        same = [[(n, x0, x1) for _, n, x0, x1 in sp.get(model, [])] for sp in spans if model in sp]
        for ax in (loss_ax, val_ax):
            if same and same[0] and all(s == same[0] for s in same):  # the same stages: shade and name them
                draw_stages(ax, same[0])
            ax.set_xlabel(f"optimizer step of the stages training the {model}", fontsize=8)
            ax.grid(alpha=0.3)
        loss_ax.set_title(f"{model}: training task loss (running mean)"
                          + (", log scale" if loss_ax.get_yscale() == "log" else ""), fontsize=10, pad=14)
        val_ax.set_title(f"{model}: validation {metric_text}", fontsize=10, pad=14)
    size_ax = fig.add_subplot(grid[:, 2])
    for i, r in enumerate(runs):
        final = r.results.get("final") or {}
        params = r.results.get("parameters") or {}
        for model, values in final.items():
            value = next((v for k, v in values.items() if r.metric and k.endswith(f"/{r.metric}")), None)
            if value is not None and params.get(model):
                size_ax.scatter(params[model], value, color=f"C{i % 10}", marker="o" if model == "student" else "s",
                                s=40)
                size_ax.annotate(model, (params[model], value), fontsize=7, xytext=(4, 4),
                                 textcoords="offset points")
    size_ax.set_title(f"final {metric_text} against parameters", fontsize=10, pad=14)
    size_ax.set_xscale("log")
    size_ax.xaxis.set_major_locator(LogLocator(base=10, numticks=6))
    size_ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 10k, 100k, 1M: no overlapping 10^x labels
    size_ax.xaxis.set_minor_formatter(NullFormatter())
    size_ax.margins(x=0.35, y=0.12)
    size_ax.set_xlabel("parameters (log scale; o student, s other models)")
    size_ax.grid(alpha=0.3)
    handles = [matplotlib.lines.Line2D([], [], color=f"C{i % 10}", linewidth=2) for i in range(len(runs))]
    # one run per legend line: the labels say what differs, and side by side they would run off the figure
    fig.legend(handles, [legend_label(r) for r in runs], loc="lower center", ncol=1, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.02 + 0.03 * len(runs), 1, 1))
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
    lines = ["# Runs compared", "", *(f"- `{r.label}`: `{r.path}`" + (f"; differs: {'; '.join(r.differs)}"
                                                                       if r.differs else "") for r in runs),
             "", text, ""]
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
