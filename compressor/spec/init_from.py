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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from compressor.core.checkpoint import load_checkpoint
from compressor.core.describe import read_description, verify_weights
from compressor.core.errors import SpecError, UserError, did_you_mean
from compressor.core.registry import Registry
from compressor.spec.checks import CheckContext
from compressor.spec.loading import dump_spec
from compressor.spec.resolved import LoadedSpec
from compressor.spec.schema import InitFrom

Shapes = dict[str, tuple[int, ...]]
#: loads a spec file with --set overrides (:func:`compressor.spec.load_spec`)
LoadSpec = Callable[[Path, list[str]], LoadedSpec]


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


def source_path(value: str, spec_file: str) -> Path:
    """A path as given (relative to the working directory), else relative to the spec's folder."""
    p = Path(value).expanduser()
    if p.exists() or p.is_absolute():
        return p
    alt = Path(spec_file).parent / p
    return alt if alt.exists() else p


def state_from_file(path: Path, model: str, registry: Registry) -> dict[str, torch.Tensor]:
    """A model's state from a state-dict file, a ``{"model": ...}`` file or an engine checkpoint; a file of
    another format through the ``weights_reader`` registered for its suffix (``.nemo``: a NeMo QuartzNet/Jasper
    CTC archive mapped onto quartznet's names)."""
    if path.suffix and registry.has("weights_reader", path.suffix):
        return registry.get("weights_reader", path.suffix).factory(path)
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


def source_state(init: InitFrom, spec_file: str, model: str, registry: Registry, run_dir: Path | None = None
                 ) -> dict[str, torch.Tensor]:
    if init.checkpoint:
        path = source_path(init.checkpoint, spec_file)
        if not path.exists():
            raise UserError(f"checkpoint file not found: {init.checkpoint}")
        return state_from_file(path, model, registry)
    folder = run_dir if run_dir is not None else source_path(str(init.run), spec_file)
    if not folder.is_dir():
        raise UserError(f"run directory not found: {folder}")
    return state_from_file(run_weights(folder, model), model, registry)


def pretraining_overrides(init: InitFrom, output_dir: str) -> list[str]:
    return [f"output_dir={output_dir}", *init.set]


def find_finished_run(loaded: LoadedSpec) -> Path | None:
    """The newest finished run of exactly this resolved spec under its output_dir, if any."""
    text = dump_spec(loaded.raw)
    base = Path(loaded.spec.output_dir) / loaded.spec.name
    for done in sorted(base.glob("*/final/COMPLETE"), reverse=True):
        run_dir = done.parent.parent
        spec_file = run_dir / "resolved_spec.yaml"
        if spec_file.exists() and spec_file.read_text(encoding="utf-8") == text:
            return run_dir
    return None


_LOADING: list[str] = []  # spec files being validated through init_from.spec (cycle guard)


def load_source_spec(init: InitFrom, parent: LoadedSpec, where: tuple, load: LoadSpec) -> LoadedSpec:
    """The pre-training spec ``init.spec`` names, loaded with ``load`` (refusing a cycle of specs)."""
    assert init.spec is not None
    path = source_path(init.spec, parent.file)
    if not path.exists():
        raise SpecError(f"spec file not found: {init.spec}", where + ("spec",))
    key = str(path.resolve())
    if key in _LOADING or key == str(Path(parent.file).resolve()):
        raise SpecError(f"init_from.spec {init.spec} leads back to a spec that is being loaded (a cycle)",
                        where + ("spec",))
    _LOADING.append(key)
    try:
        return load(path, pretraining_overrides(init, parent.spec.output_dir))
    finally:
        _LOADING.pop()


def _meta_shapes(loaded: LoadedSpec, registry: Registry, name: str) -> Shapes:
    model = CheckContext(loaded, registry, 0, ()).build_model(name)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check(loaded: LoadedSpec, registry: Registry, load: LoadSpec) -> None:
    """Validate every model's ``init_from`` before any work (see the module docstring); ``load`` reads the
    pre-training specs ``init_from.spec`` names."""
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
            src = load_source_spec(init, loaded, where, load)
            if source_model not in src.spec.all_models():
                models = src.spec.all_models()
                raise SpecError(f"{init.spec} has no model '{source_model}'{did_you_mean(source_model, models)}",
                                where + ("model",))
            source = _meta_shapes(src, registry, source_model)
        else:
            try:
                source = {k: tuple(v.shape) for k, v in source_state(init, loaded.file, source_model, registry).items()}
            except UserError as e:
                raise SpecError(str(e), where + ("run" if init.run else "checkpoint",)) from None
        try:
            plan(_meta_shapes(loaded, registry, name), source, init)
        except ValueError as e:
            raise SpecError(str(e), where) from None
