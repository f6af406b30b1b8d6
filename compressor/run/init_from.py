"""Transfer initialisation at run time: load the matching weights into a model, run the pre-training specs
``init_from.spec`` names, and report what was loaded (``init_from.json``, a table in ``summary.md``).

What ``init_from`` means and how it is checked before any work: :mod:`compressor.spec.init_from`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from compressor.core.errors import UserError
from compressor.core.registry import Registry
from compressor.spec import InitFrom, LoadedSpec, load_spec
from compressor.spec.init_from import (
    find_finished_run,
    group_of,
    load_source_spec,
    plan,
    pretraining_overrides,
    source_path,
    source_state,
)


def ensure_pretrained(loaded: LoadedSpec, run: Callable[[Path, list[str]], Path]) -> dict[str, Path]:
    """For every ``init_from.spec``: the finished run of that spec, running it first when there is none.

    Called before the run starts (and before any distributed set-up): returns model name -> run directory.
    ``run`` runs a spec file with ``--set`` overrides and returns its run directory
    (:func:`compressor.run.engine.run_spec`).
    """
    out: dict[str, Path] = {}
    for name, ms in loaded.spec.all_models().items():
        init = ms.init_from
        if init is None or not init.spec:
            continue
        where = ((name,) if name in ("teacher", "student") else ("models", name)) + ("init_from",)
        src = load_source_spec(init, loaded, where, load_spec)
        found = find_finished_run(src)
        if found is None:
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise UserError(f"{loaded.file}: run the pre-training spec first (compressor run {init.spec}); "
                                "it is not run from inside a multi-process run")
            print(f"init_from: no finished run of {init.spec} in {src.spec.output_dir}: running it first",
                  flush=True)
            found = run(source_path(init.spec, loaded.file), pretraining_overrides(init, loaded.spec.output_dir))
        out[name] = found
    return out


def apply(model: torch.nn.Module, name: str, init: InitFrom, spec_file: str, registry: Registry,
          run_dir: Path | None = None) -> dict[str, Any]:
    """Load the matching weights into ``model`` (the rest keeps its initialisation); return the report.
    ``registry`` holds the ``weights_reader`` of source files in other formats (``.nemo``)."""
    source_model = init.model or name
    state = source_state(init, spec_file, source_model, registry, run_dir)
    own = model.state_dict()
    try:
        result = plan({k: tuple(v.shape) for k, v in own.items()}, {k: tuple(v.shape) for k, v in state.items()},
                      init)
    except ValueError as e:
        raise UserError(f"{spec_file}: {name}.init_from: {e}") from None
    merged = dict(own)
    for key in result["loaded"]:
        merged[key] = state[key].to(own[key].dtype)
    model.load_state_dict(merged)
    params = dict(model.named_parameters())
    where = (str(run_dir / "final" / f"{source_model}.pt") if run_dir is not None
             else init.checkpoint or str(Path(str(init.run)) / "final" / f"{source_model}.pt"))
    return {"source": where, "source_model": source_model, **result,
            "parameters_loaded": sum(params[k].numel() for k in result["loaded"] if k in params),
            "parameters": sum(p.numel() for p in params.values())}


def write_report(run_dir: Path, reports: Mapping[str, Any]) -> None:
    (run_dir / "init_from.json").write_text(json.dumps(reports, indent=1), encoding="utf-8")


def markdown(reports: Mapping[str, Any]) -> str:
    """The summary section: per model, a table by module of tensors loaded, skipped and re-initialised."""
    lines = ["## Initialisation (init_from)", ""]
    for name, rep in reports.items():
        lines += [f"**{name}** from `{rep['source']}`: {len(rep['loaded'])} tensors loaded "
                  f"({rep['parameters_loaded']:,} of {rep['parameters']:,} parameters), {len(rep['skipped'])} "
                  f"skipped, {len(rep['reinitialised'])} re-initialised, {len(rep['unused'])} source tensors "
                  "unused.", "",
                  "| module | loaded | skipped | re-initialised | why |", "|---|---:|---:|---:|---|"]
        groups: dict[str, dict[str, Any]] = {
            m: {"loaded": 0, "skipped": 0, "reinit": 0, "why": set()} for m in rep.get("modules", [])}
        for key in rep["loaded"]:
            groups.setdefault(group_of(key), {"loaded": 0, "skipped": 0, "reinit": 0, "why": set()})["loaded"] += 1
        for item in rep["skipped"]:
            g = groups.setdefault(group_of(item["key"]), {"loaded": 0, "skipped": 0, "reinit": 0, "why": set()})
            g["skipped"] += 1
        for item in rep["reinitialised"]:
            g = groups.setdefault(group_of(item["key"]), {"loaded": 0, "skipped": 0, "reinit": 0, "why": set()})
            g["reinit"] += 1
            g["why"].add(item["reason"])
        for group, g in groups.items():
            lines.append(f"| {group} | {g['loaded']} | {g['skipped']} | {g['reinit']} | "
                         f"{'; '.join(sorted(g['why']))} |")
        lines.append("")
    return "\n".join(lines)
