"""Ship a model of a finished run: ``final/<model>.pt`` and its description become a shipped folder
(:mod:`compressor.core.shipped`) that any spec uses as ``{name: pretrained, path: FOLDER}`` (or ``id:`` once the
folder is under the package's ``compressor/pretrained/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from compressor.core.describe import complete, description_path, load_described, read_description
from compressor.core.errors import UserError, did_you_mean
from compressor.core.rundir import SPEC_FILE
from compressor.core.shipped import TOKENIZER_FILES, write_shipped


def _trained(run_dir: Path, model: str) -> dict[str, Any]:
    """Where the model comes from: the run, its spec's name, the optimizer steps of the stages that trained it,
    its final metrics per split (from ``final/COMPLETE``, when present)."""
    spec: dict[str, Any] = {}
    try:
        spec = yaml.safe_load((run_dir / SPEC_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        pass
    results: dict[str, Any] = {}
    complete_file = run_dir / "final" / "COMPLETE"
    if complete_file.is_file():
        try:
            results = json.loads(complete_file.read_text(encoding="utf-8"))
        except ValueError:
            results = {}
    trained_in = {st.get("name") for st in spec.get("stages") or [] if model in (st.get("train") or [])}
    stages = [s for s in results.get("stages") or [] if s.get("stage") in trained_in]
    metrics: dict[str, dict[str, Any]] = {}
    for key, value in ((results.get("final") or {}).get(model) or {}).items():
        split, _, name = key.partition("/")
        metrics.setdefault(split, {})[name] = value
    return {"run": run_dir.name, "spec": spec.get("name"), "steps": sum(int(s.get("steps") or 0) for s in stages),
            "stages": [s.get("stage") for s in stages], "final": metrics}


def ship_run_model(run_dir: str | Path, model: str, out: str | Path, force: bool = False) -> Path:
    """Write the shipped folder ``out`` for model ``model`` of the finished run ``run_dir``; return ``out``.

    The model is rebuilt from its description first (so a folder that is written loads). Refused (one line,
    exit 2): a run without ``final/<model>.pt`` or its description, weights that no longer match their
    description, a description missing data facts, an existing ``out`` unless ``force``."""
    run_dir = Path(run_dir)
    final = run_dir / "final"
    weights = final / f"{model}.pt"
    if not final.is_dir():
        runs = sorted(p.parent.parent for p in run_dir.glob("*/final/COMPLETE"))
        if runs:  # the spec's output folder, holding its runs: which one is for the user to say
            raise UserError(f"{run_dir} holds runs, not a run: give one of them as RUN_DIR (finished: "
                            f"{', '.join(str(r) for r in runs[-3:])})")
    if not weights.is_file():
        found = sorted(p.stem for p in final.glob("*.pt")) if final.is_dir() else []
        where = did_you_mean(model, found) if found else " (it has no final/ models: did the run finish?)"
        raise UserError(f"--model: {run_dir} has no final/{model}.pt{where}")
    desc = read_description(weights)
    if desc is None:
        raise UserError(f"{run_dir}: final/{model}.pt has no description ({description_path(weights).name}); "
                        f"a run written by an older version cannot be shipped")
    if not complete(desc):
        raise UserError(f"{description_path(weights)}: data facts {desc.get('info_left_out')} could not be "
                        f"recorded, so the model cannot be rebuilt without its data; not shipped")
    from compressor.plugins import get_plugins

    built = load_described(weights, desc, get_plugins().registry, str(weights))  # checks the weights' SHA-256
    files: dict[str, Path] = {}
    for key, name in ((desc.get("tokenizer") or {}).get("files") or {}).items():
        if key in TOKENIZER_FILES:
            src = final / name
            if not src.is_file():
                raise UserError(f"{src} is missing ({description_path(weights).name} names it)")
            files[key] = src
    info = dict(desc.get("info") or {})
    for key in TOKENIZER_FILES:
        if key in info:
            info[key] = TOKENIZER_FILES[key]  # the run's paths mean nothing elsewhere: the folder's copy is used
    desc = {**desc, "info": info}
    return write_shipped(Path(out), built.state_dict(), desc, files, _trained(run_dir, model),
                         sum(p.numel() for p in built.parameters()), force)
