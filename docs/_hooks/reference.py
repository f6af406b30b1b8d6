"""MkDocs hook: the reference pages are generated from the code at build time, never copied by hand.

- ``reference/spec.md``: every key of a spec, from the pydantic schemas in ``compressor.spec``;
- ``reference/components.md``: every registered model, task, dataset, schedule, strategy, exporter, optimizer
  and LR schedule with its argument schema, from the loaded plugins (what ``compressor plugins`` prints);
- ``reference/hooks.md``: the hook contract, from the hook specifications in ``compressor.core.hookspecs``;
- ``papers/<benchmark folder>-results.md``: each paper benchmark's ``RESULTS.md``, as its script wrote it.

A page that cannot be generated fails the build (``mkdocs build --strict`` in the tests).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from pydantic import BaseModel

GENERATED = {
    "reference/spec.md": "_spec_page",
    "reference/components.md": "_components_page",
    "reference/hooks.md": "_hooks_page",
}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown(doc: str) -> str:
    """Docstrings are written for Sphinx: turn roles (``:func:`x` ``) into code spans, ``::`` into ``:``."""
    doc = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", doc)
    doc = re.sub(r"`([^`<]+) <(https?://[^>]+)>`_", r"[\1](\2)", doc)
    return re.sub(r"::\n", ":\n", doc)


def _rows_table(rows: list[dict[str, Any]], schema: type[BaseModel] | None = None) -> list[str]:
    from compressor.core.registry import first_model
    from compressor.reporting.catalog import yaml_value

    if not rows:
        return ["No arguments.", ""]
    out = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for r in rows:
        nested = first_model(schema.model_fields[r["name"]].annotation) if schema is not None else None
        kind = f"`{nested.__name__}` (below)" if nested is not None else r["type"]
        kind += f" ({r['bounds']})" if r["bounds"] else ""
        default = "required" if r["required"] else f"`{yaml_value(r['default'])}`"
        out.append(f"| `{r['name']}` | {_cell(kind)} | {_cell(default)} | {_cell(r['doc'])} |")
    return out + [""]


def _spec_page() -> str:
    from compressor.core.registry import first_model
    from compressor.reporting.catalog import schema_rows
    from compressor.spec import Spec

    lines = ["# Spec reference", "",
             "Generated from the spec's schema (`compressor/spec/schema.py`) when the docs are built. A component "
             "named by `name:` (a model, task, dataset, strategy, optimizer, LR schedule, exporter) takes the "
             "arguments listed for it in [Components](components.md), flat beside its name.", ""]
    seen: set[type[BaseModel]] = set()
    queue: list[tuple[str, type[BaseModel]]] = [("spec (top level)", Spec)]
    while queue:
        title, schema = queue.pop(0)
        if schema in seen:
            continue
        seen.add(schema)
        lines += [f"## `{schema.__name__}`: {title}", ""]
        if "__doc__" in vars(schema) and schema.__doc__:
            lines += [_markdown(inspect.getdoc(schema) or ""), ""]
        lines += _rows_table(schema_rows(schema), schema)
        for name, f in schema.model_fields.items():
            m = first_model(f.annotation)
            if m is not None and m not in seen:
                queue.append((f"the `{name}` key of {schema.__name__}", m))
    return "\n".join(lines)


def _components_page() -> str:
    from compressor.reporting.catalog import _KIND_TITLES, catalog

    lines = ["# Components", "",
             "Every component a spec can name, by the plugin that registers it, with its arguments. Generated "
             "from the loaded plugins when the docs are built; `compressor plugins` prints the same from the "
             "command line, including third-party plugins installed beside compressor.", ""]
    for p in catalog():
        lines += [f"## {p['plugin']}", "", f"`{p['module']}` ({p['package']})", ""]
        for c in p["components"]:
            lines += [f"### {_KIND_TITLES.get(c['kind'], c['kind']).rstrip('s')} `{c['name']}`", ""]
            if c["doc"]:
                lines += [_markdown(c["doc"]), ""]
            if c.get("hooks"):
                lines += ["Hooks: " + ", ".join(f"`{h}`" for h in c["hooks"]), ""]
            lines += _rows_table(c["args"])
    return "\n".join(lines)


def _hooks_page() -> str:
    import compressor.core.hookspecs as hs

    lines = ["# Hook reference", "", "Generated from `compressor/core/hookspecs.py` when the docs are built.", "",
             _markdown(inspect.getdoc(hs) or ""), ""]
    for name, fn in inspect.getmembers(hs, inspect.isfunction):
        if not name.startswith("compressor_") or fn.__module__ != hs.__name__:
            continue
        opts = getattr(fn, "compressor_spec", None) or {}
        marks = [k for k in ("firstresult", "historic", "warn_on_impl") if opts.get(k)]
        lines += [f"## `{name}{inspect.signature(fn)}`", ""]
        if marks:
            lines += ["Marked: " + ", ".join(f"`{m}`" for m in marks), ""]
        lines += [_markdown(inspect.getdoc(fn) or ""), ""]
    return "\n".join(lines)


def results_pages(root: Path) -> dict[str, Path]:
    """Site path -> the RESULTS.md that a paper benchmark's script writes beside its results."""
    return {f"papers/{p.parent.name}-results.md": p for p in sorted((root / "benchmarks").glob("*/RESULTS.md"))}


def on_files(files: Files, config: Any) -> Files:
    for path, maker in GENERATED.items():
        files.append(File.generated(config, path, content=globals()[maker]()))
    root = Path(config["config_file_path"]).parent
    for path, source in results_pages(root).items():
        files.append(File.generated(config, path, abs_src_path=str(source)))
    return files
