"""Tables for people: the results printed at the end of ``compressor run`` and by ``compressor eval``.

:func:`text_table` aligns columns for a terminal; :func:`markdown_table` writes the same rows for files.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from compressor.core.progress import duration


def cell(value: Any) -> str:
    """``0.1234`` (4 significant digits), ``12,345``, ``-`` for nothing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}" if abs(value) >= 1 else f"{value:.4f}"
        return f"{value:.3e}"
    return str(value)


def _numeric(values: Sequence[Any]) -> bool:
    return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned with spaces; numeric columns right-aligned."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    right = [_numeric([row[i] for row in rows]) and i > 0 for i in range(len(headers))]

    def fmt(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    return "\n".join([fmt(list(headers))] + [fmt(r) for r in cells])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; numeric columns right-aligned."""
    align = ["---:" if i > 0 and _numeric([row[i] for row in rows]) else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)


def restated_keys(keys: Sequence[str], rows: Sequence[dict[str, Any]], names: Collection[str]) -> set[str]:
    """The keys a table leaves out: those named in ``names`` (a task's ``restated_metrics``, e.g. ``error_rate``)
    whose every value is 1 minus another key's of the same split (``accuracy``)."""
    out: set[str] = set()
    for b in keys:
        split, _, base = b.rpartition("/")
        if base not in names:
            continue
        for a in keys:
            if a == b or a.rpartition("/")[0] != split:
                continue
            pairs = [(r.get(a), r.get(b)) for r in rows]
            if pairs and all(isinstance(x, (int, float)) and isinstance(y, (int, float)) and abs(1.0 - x - y) < 1e-9
                             for x, y in pairs):
                out.add(b)
                break
    return out


def run_results(results: dict[str, Any], split: str | None = None) -> str:
    """The text printed when a run ends: final metrics and sizes per model, stages, export variants."""
    blocks: list[str] = []
    final: dict[str, dict[str, float]] = results.get("final") or {}
    params: dict[str, int] = results.get("parameters") or {}
    if final:
        keys = list(dict.fromkeys(k for m in final.values() for k in m))
        restated = restated_keys(keys, list(final.values()), results.get("restated_metrics") or ())
        keys = [k for k in keys if k not in restated]
        main = next((st.get("metric") for st in reversed(results.get("stages") or []) if st.get("metric")), None)
        splits = list(dict.fromkeys(k.split("/", 1)[0] for k in keys if "/" in k))
        # grouped by split (in the order evaluated), the main metric first in each
        keys.sort(key=lambda k: (splits.index(k.split("/", 1)[0]) if "/" in k else len(splits),
                                 k.split("/", 1)[-1] != main))
        split = split or (splits[0] if splits else "test")
        short = [k.split("/", 1)[1] if k.startswith(f"{split}/") else k for k in keys]
        rows = [[name, params.get(name), *(metrics.get(k) for k in keys)] for name, metrics in final.items()]
        others = [s for s in splits if s != split]
        title = f"final evaluation ({split} split" + (f"; then {', '.join(others)}" if others else "") + ")"
        blocks.append(f"{title}\n" + text_table(["model", "parameters", *short], rows))
        if params.get("teacher") and params.get("student") and "teacher" not in results.get("untrained", []):
            ratio = params["student"] / params["teacher"]
            blocks[-1] += f"\nstudent/teacher parameters: {ratio:.3f} ({1 / ratio:.1f}x smaller)"
        alone = results.get("alone") or {}
        if alone.get("model") in final and alone.get("copies") in final:
            own, base = final[alone["copies"]], final[alone["model"]]
            diffs = [f"{k} {100 * (own[k] - base[k]) / base[k]:+.1f}%" for k in keys
                     if k.split("/", 1)[-1] == main and isinstance(own.get(k), (int, float))
                     and isinstance(base.get(k), (int, float)) and base[k]]
            if diffs:
                blocks[-1] += f"\n{alone['copies']} vs {alone['model']} (relative): {', '.join(diffs)}"
    stages = (results.get("stages") or []) + ((results.get("alone") or {}).get("stages") or [])
    if stages:
        rows = []
        for i, st in enumerate(stages):
            metric = st.get("metric")
            best = st.get(f"best_{metric}")
            rows.append([i, st.get("stage"), st.get("steps"), st.get("epochs"), duration(st.get("seconds") or 0),
                         f"{metric} {cell(best)}" if best is not None else "-"])
        blocks.append("stages\n" + text_table(["#", "stage", "steps", "epochs", "time", "best validation"], rows))
    report = (results.get("export") or {}).get("report") or {}
    rows_ = (report.get("benchmark") or {}).get("rows") or []
    if rows_:
        quality = (report.get("benchmark") or {}).get("quality") or {}
        metric = quality.get("metric")
        rows = [[r.get("variant"), r.get("params"), r.get("size_mb"), r.get("latency_ms"), r.get("rtf"),
                 *([r.get("quality")] if metric else [])] for r in rows_]
        threads = (report.get("benchmark") or {}).get("threads", 1)
        rated = f"; {metric} on {quality.get('utterances')} {quality.get('split')} utterances" if metric else ""
        blocks.append(f"export of the {report.get('model', 'student')} ({report.get('family', 'onnx')}; latency on "
                      f"{threads} thread"
                      f"{'s' if threads != 1 else ''}{rated})\n"
                      + text_table(["variant", "parameters", "size (MB)", "latency/utt (ms)", "RTF",
                                    *([metric] if metric else [])], rows))
        int8 = report.get("int8") or {}
        if "kept" in int8 and not int8.get("kept") and int8.get("reason"):
            blocks[-1] += f"\nint8: {int8['reason']}"
    return "\n\n".join(blocks)


def print_run_results(run_dir: Path) -> None:
    """What ``compressor run`` prints at the end (standard output)."""
    run_dir = Path(run_dir)
    complete = run_dir / "final" / "COMPLETE"
    print(f"run finished: {run_dir}")
    try:
        results = json.loads(complete.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        results = {}
    text = run_results(results)
    if text:
        print()
        print(text)
        print()
    for name, label in (("summary.md", "summary"), ("plots", "plots"), ("export", "export")):
        if (run_dir / name).exists():
            print(f"{label}: {run_dir / name}")
