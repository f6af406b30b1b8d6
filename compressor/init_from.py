"""Transfer initialisation: start any model from another model's weights, matched by name and shape.

A model in a spec may name where its weights come from::

    student:
      name: quartznet
      preset: 15x5
      init_from:
        run: runs/quartznet_pretrain_en/20261130-101500   # a finished run: its final/<model>.pt
        # checkpoint: english.pt                          # or a state-dict file (or an engine checkpoint,
                                                          # or a NeMo QuartzNet .nemo: compressor.external.nemo_ctc)
        # spec: specs/quartznet_pretrain_en.yaml          # or a pre-training spec: its finished run in this
        # set: ["seed=1"]                                 #   spec's output_dir is reused, or it is run first
        model: student                                   # the source model (default: the same name)
        include: ["encoder*"]                             # glob patterns over state keys (default: all)
        exclude: ["decoder*"]

Every tensor of the model whose name is in the source, selected by ``include``/``exclude``, and of the same
shape is *loaded*; source tensors matched by name but not loaded are *skipped* (excluded, or another shape: a
new alphabet's decoder); every tensor not loaded keeps the model's fresh, seeded initialisation
(*re-initialised*). A pattern also matches every key below it (``encoder`` matches ``encoder.layers.0.…``).
The run's ``summary.md`` shows a table of the three by module and ``init_from.json`` lists every key.

Checked before any work, against the model built on the meta device: the source exists, every ``include``
pattern matches a source key, an explicitly included tensor has the model's shape, and at least one tensor
loads. Files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field, model_validator

from compressor.errors import SpecError, UserError, did_you_mean
from compressor.registry import Args

if TYPE_CHECKING:
    from compressor.spec import LoadedSpec

Shapes = dict[str, tuple[int, ...]]


class InitFrom(Args):
    """Where a model's initial weights come from (exactly one of ``run``, ``checkpoint``, ``spec``)."""

    run: str | None = Field(default=None, description="a finished run directory (its final/<model>.pt)")
    checkpoint: str | None = Field(default=None, description="a state-dict file or an engine checkpoint")
    spec: str | None = Field(default=None, description="a pre-training spec: its finished run in this spec's "
                                                       "output_dir, run first when there is none")
    set: list[str] = Field(default_factory=list, description="--set overrides for 'spec'")
    model: str | None = Field(default=None, description="the source model (default: the same name)")
    include: list[str] = Field(default_factory=list, description="glob patterns over state keys (default: all)")
    exclude: list[str] = Field(default_factory=list, description="glob patterns over state keys to leave out")

    @model_validator(mode="after")
    def _one_source(self) -> InitFrom:
        given = [k for k in ("run", "checkpoint", "spec") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of 'run', 'checkpoint' or 'spec'"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.set and not self.spec:
            raise ValueError("'set' overrides apply to a 'spec' source only")
        return self


def matches(key: str, patterns: list[str]) -> bool:
    """``key`` is matched by a glob pattern, or lies below a pattern naming a module (``encoder``)."""
    return any(fnmatch.fnmatchcase(key, p) or key.startswith(p.rstrip(".") + ".") for p in patterns)


def group_of(key: str) -> str:
    """The module a key is reported under: up to the first numeric index (``encoder.layers.3``), else its
    first component (``decoder``, ``cmvn_mean``)."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[:i + 1])
    return parts[0]


def prefixes(keys: list[str]) -> list[str]:
    return sorted({k.split(".")[0] for k in keys})


def plan(target: Shapes, source: Shapes, init: InitFrom) -> dict[str, Any]:
    """Which target keys load, which source keys are skipped (and why), which keys keep their init.

    Raises ``ValueError`` for an include pattern matching no source key, a shape clash on an explicitly
    included key, or nothing to load.
    """
    for pattern in init.include:
        if not any(matches(k, [pattern]) for k in source):
            modules = {".".join(k.split(".")[:i]) for k in source for i in range(1, min(4, k.count(".") + 1))}
            raise ValueError(f"include pattern '{pattern}' matches no weight of the source"
                             f"{did_you_mean(pattern, sorted(modules | {group_of(k) for k in source}))}")
    loaded, skipped, reinit = [], [], []
    for key, shape in target.items():
        if key not in source:
            reinit.append({"key": key, "reason": "not in the source"})
            continue
        if (init.include and not matches(key, init.include)) or matches(key, init.exclude):
            skipped.append({"key": key, "reason": "excluded"})
        elif tuple(source[key]) != tuple(shape):
            if init.include:
                raise ValueError(f"included weight '{key}' has shape {tuple(source[key])} in the source but "
                                 f"{tuple(shape)} in this model: exclude it to re-initialise it")
            skipped.append({"key": key, "reason": f"shape {tuple(source[key])} in the source, {tuple(shape)} here"})
        else:
            loaded.append(key)
            continue
        reinit.append({"key": key, "reason": skipped[-1]["reason"]})
    if not loaded:
        raise ValueError(f"init_from loads no weight: the source has {', '.join(prefixes(list(source)))}; this "
                         f"model has {', '.join(prefixes(list(target)))}"
                         + (" (all excluded or of other shapes)" if skipped else " (no name in common)"))
    unused = [k for k in source if k not in target]
    modules = list(dict.fromkeys(group_of(k) for k in target))
    return {"loaded": loaded, "skipped": skipped, "reinitialised": reinit, "unused": unused, "modules": modules}


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------


def _path(value: str, spec_file: str) -> Path:
    """A path as given (relative to the working directory), else relative to the spec's folder."""
    p = Path(value).expanduser()
    if p.exists() or p.is_absolute():
        return p
    alt = Path(spec_file).parent / p
    return alt if alt.exists() else p


def state_from_file(path: Path, model: str) -> dict[str, torch.Tensor]:
    """A model's state from a state-dict file, a ``{"model": ...}`` file or an engine checkpoint."""
    from compressor.checkpoint import load_checkpoint

    if path.suffix == ".nemo":  # a NeMo QuartzNet/Jasper CTC checkpoint, mapped onto quartznet's names
        from compressor.external.nemo_ctc import nemo_state

        return nemo_state(path)
    obj = load_checkpoint(path)
    if isinstance(obj, dict) and isinstance(obj.get("models"), dict):
        if model not in obj["models"]:
            raise UserError(f"{path} holds models {', '.join(obj['models'])}, not '{model}'"
                            f"{did_you_mean(model, obj['models'])}")
        obj = obj["models"][model]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} does not hold a model state dict")
    return obj


def run_weights(run_dir: Path, model: str) -> Path:
    """A finished run's ``final/<model>.pt``; its SHA-256 checked against its description when it has one (a run
    of an older version has none)."""
    from compressor.describe import read_description, verify_weights

    path = run_dir / "final" / f"{model}.pt"
    if not path.exists():
        have = sorted(p.stem for p in (run_dir / "final").glob("*.pt"))
        if not (run_dir / "final").exists():
            raise UserError(f"{run_dir} has no final weights (not a finished run directory)")
        raise UserError(f"{run_dir} has no model '{model}'{did_you_mean(model, have)}")
    desc = read_description(path)
    if desc is not None:
        verify_weights(path, desc)
    return path


def pretraining_overrides(init: InitFrom, output_dir: str) -> list[str]:
    return [f"output_dir={output_dir}", *init.set]


def find_finished_run(loaded: LoadedSpec) -> Path | None:
    """The newest finished run of exactly this resolved spec under its output_dir, if any."""
    from compressor.spec import dump_spec

    text = dump_spec(loaded.raw)
    base = Path(loaded.spec.output_dir) / loaded.spec.name
    for done in sorted(base.glob("*/final/COMPLETE"), reverse=True):
        run_dir = done.parent.parent
        spec_file = run_dir / "resolved_spec.yaml"
        if spec_file.exists() and spec_file.read_text(encoding="utf-8") == text:
            return run_dir
    return None


_LOADING: list[str] = []  # spec files being validated through init_from.spec (cycle guard)


def load_source_spec(init: InitFrom, parent: LoadedSpec, where: tuple) -> LoadedSpec:
    from compressor.spec import load_spec

    assert init.spec is not None
    path = _path(init.spec, parent.file)
    if not path.exists():
        raise SpecError(f"spec file not found: {init.spec}", where + ("spec",))
    key = str(path.resolve())
    if key in _LOADING or key == str(Path(parent.file).resolve()):
        raise SpecError(f"init_from.spec {init.spec} leads back to a spec that is being loaded (a cycle)",
                        where + ("spec",))
    _LOADING.append(key)
    try:
        return load_spec(path, pretraining_overrides(init, parent.spec.output_dir))
    finally:
        _LOADING.pop()


# --------------------------------------------------------------------------------------------------
# Validation and application
# --------------------------------------------------------------------------------------------------


def _meta_shapes(loaded: LoadedSpec, name: str) -> Shapes:
    from compressor.plugins import get_registry
    from compressor.spec import CheckContext

    model = CheckContext(loaded, get_registry(), 0, ()).build_model(name)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check(loaded: LoadedSpec) -> None:
    """Validate every model's ``init_from`` before any work (see the module docstring)."""
    for name, ms in loaded.spec.all_models().items():
        init: InitFrom | None = ms.init_from
        if init is None:
            continue
        where = ((name,) if name in ("teacher", "student") else ("models", name)) + ("init_from",)
        if ms.checkpoint:
            raise SpecError("give either 'checkpoint' (all weights, exactly) or 'init_from' (matching weights), "
                            "not both", where)
        source_model = init.model or name
        if init.spec:
            src = load_source_spec(init, loaded, where)
            if source_model not in src.spec.all_models():
                models = src.spec.all_models()
                raise SpecError(f"{init.spec} has no model '{source_model}'{did_you_mean(source_model, models)}",
                                where + ("model",))
            source = _meta_shapes(src, source_model)
        else:
            try:
                source = {k: tuple(v.shape) for k, v in source_state(init, loaded.file, source_model).items()}
            except UserError as e:
                raise SpecError(str(e), where + ("run" if init.run else "checkpoint",)) from None
        try:
            plan(_meta_shapes(loaded, name), source, init)
        except ValueError as e:
            raise SpecError(str(e), where) from None


def source_state(init: InitFrom, spec_file: str, model: str, run_dir: Path | None = None
                 ) -> dict[str, torch.Tensor]:
    if init.checkpoint:
        path = _path(init.checkpoint, spec_file)
        if not path.exists():
            raise UserError(f"checkpoint file not found: {init.checkpoint}")
        return state_from_file(path, model)
    folder = run_dir if run_dir is not None else _path(str(init.run), spec_file)
    if not folder.is_dir():
        raise UserError(f"run directory not found: {folder}")
    return state_from_file(run_weights(folder, model), model)


def ensure_pretrained(loaded: LoadedSpec) -> dict[str, Path]:
    """For every ``init_from.spec``: the finished run of that spec, running it first when there is none.

    Called before the run starts (and before any distributed set-up): returns model name -> run directory.
    """
    from compressor.engine import run_spec

    out: dict[str, Path] = {}
    for name, ms in loaded.spec.all_models().items():
        init = ms.init_from
        if init is None or not init.spec:
            continue
        where = ((name,) if name in ("teacher", "student") else ("models", name)) + ("init_from",)
        src = load_source_spec(init, loaded, where)
        found = find_finished_run(src)
        if found is None:
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise UserError(f"{loaded.file}: run the pre-training spec first (compressor run {init.spec}); "
                                "it is not run from inside a multi-process run")
            print(f"init_from: no finished run of {init.spec} in {src.spec.output_dir}: running it first",
                  flush=True)
            found = run_spec(_path(init.spec, loaded.file), pretraining_overrides(init, loaded.spec.output_dir))
        out[name] = found
    return out


def apply(model: torch.nn.Module, name: str, init: InitFrom, spec_file: str, run_dir: Path | None = None
          ) -> dict[str, Any]:
    """Load the matching weights into ``model`` (the rest keeps its initialisation); return the report."""
    source_model = init.model or name
    state = source_state(init, spec_file, source_model, run_dir)
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
