"""``pretrained``: a shipped model (:mod:`compressor.core.shipped`) used as any spec's model.

    teacher: {name: pretrained, id: rnnt_read_speech_en}   # a folder under the package's compressor/pretrained/
    teacher: {name: pretrained, path: shipped/my_teacher}  # a folder written by 'compressor teacher ship'

The model is the family its ``model.json`` records (``rnnt_lstm``, ``quartznet`` ...), built with the recorded
arguments and data facts through the registry, so it is that family's module: a frozen teacher for
``module_replacing`` or ``logit_kd``, evaluated and exported as that family. Before any weight is read the SHA-256 of
``model.safetensors`` is checked against ``model.json``; the weights are read with safetensors (no pickle) and
loaded strictly. The run's data must match what the model was trained on (output units, feature dimension, front
end), else the spec is refused naming the key. ``compressor validate`` reads ``model.json`` only; ``data.tokenizer:
{from_teacher: teacher}`` adopts the model's units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from compressor.core.checkpoint import load_checked
from compressor.core.describe import DESCRIBED_AS
from compressor.core.errors import SpecError, UserError
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.core.shipped import load_shipped_state, read_shipped, shipped_info

#: the package's shipped models: ``id: X`` is the folder ``compressor/pretrained/X``
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "pretrained"


class PretrainedArgs(Args):
    """Which shipped model: ``id`` (shipped with the package) or ``path`` (a folder of your own)."""

    id: str | None = Field(default=None, description="a model shipped with the package: a folder under "
                                                      "compressor/pretrained/ (e.g. rnnt_read_speech_en)")
    path: str | None = Field(default=None, description="a shipped model folder of your own (written by "
                                                        "'compressor teacher ship')")

    @model_validator(mode="after")
    def _one_source(self) -> PretrainedArgs:
        if (self.id is None) == (self.path is None):
            raise ValueError("give exactly one of 'id' (a model shipped with the package) and 'path' (a folder)")
        if self.id is not None and (not self.id or "/" in self.id or "\\" in self.id or self.id.startswith(".")):
            raise ValueError(f"id '{self.id}' is not a folder name under compressor/pretrained/")
        try:
            folder(self)  # exists, with a readable model.json: checked at validation, before any work
        except UserError as e:
            raise ValueError(str(e)) from None
        return self


def folder(args: PretrainedArgs) -> Path:
    """The shipped folder ``args`` names, checked to hold a readable ``model.json`` (no weights are read); a
    :class:`UserError` otherwise."""
    if args.id is not None:
        path = PACKAGE_DIR / args.id
        if not path.is_dir():
            have = sorted(p.name for p in PACKAGE_DIR.iterdir() if (p / "model.json").is_file()) \
                if PACKAGE_DIR.is_dir() else []
            raise UserError(f"no shipped model '{args.id}' in {PACKAGE_DIR} (shipped: {', '.join(have) or 'none'})")
    else:
        path = Path(str(args.path)).expanduser()
    read_shipped(path)
    return path


def _label(args: PretrainedArgs) -> str:
    return f"id: {args.id}" if args.id is not None else f"path: {args.path}"


def data_problem(desc: dict[str, Any], info: dict[str, Any]) -> tuple[str, str] | None:
    """``(data key, why)`` when the data facts ``info`` do not fit the shipped model's description, else None.
    Facts the data does not state (at validation, before it is built) are not compared."""
    units = desc.get("units")
    tokens = info.get("tokens") or info.get("labels")
    if isinstance(units, list) and isinstance(tokens, list) and list(tokens) != units:
        diff = next((i for i, (a, b) in enumerate(zip(units, tokens)) if a != b), min(len(units), len(tokens)))
        return "tokenizer", (f"the model's {len(units)} output units differ from the data's {len(tokens)} "
                             f"(first difference at index {diff})")
    size = (desc.get("tokenizer") or {}).get("vocab_size")
    if size is not None and info.get("vocab_size") is not None and info["vocab_size"] != size:
        return "tokenizer", f"the model has {size} output units, the data's vocabulary {info['vocab_size']}"
    features = desc.get("features") or {}
    if features.get("dim") is not None and info.get("feature_dim") is not None \
            and info["feature_dim"] != features["dim"]:
        return "feature_dim", (f"the model reads {features['dim']} features per frame, the data gives "
                               f"{info['feature_dim']}")
    if features.get("kind") is not None and info.get("frontend") is not None and info["frontend"] != features["kind"]:
        return "frontend", f"the model was trained on the '{features['kind']}' front end, the data uses " \
                           f"'{info['frontend']}'"
    return None


def check_data(args: PretrainedArgs, info: dict[str, Any]) -> None:
    """Refuse data facts that do not fit the shipped model: a :class:`SpecError` at the model's ``id`` or ``path``
    naming the data key (outside spec validation it reads as ``at id: ... (data.tokenizer) ...``)."""
    path = folder(args)
    problem = data_problem(read_shipped(path), info)
    if problem is not None:
        key, why = problem
        raise SpecError(f"the shipped model {path / 'model.json'} does not fit the run's data (data.{key}): {why}",
                        ("id" if args.id is not None else "path",))


def build_pretrained(args: PretrainedArgs, info: dict[str, Any] | None = None) -> Any:
    """The shipped model: its recorded family built with the recorded arguments, its checked weights loaded.

    On the meta device (validation) only the structure is built and no weights are read."""
    import torch

    from compressor.plugins import get_plugins

    path = folder(args)
    desc = read_shipped(path)
    if info is not None:
        try:
            check_data(args, info)
        except SpecError as e:
            raise UserError(f"pretrained model ({_label(args)}): {e.message}") from None
    registry = get_plugins().registry
    family = desc["family"]
    if not registry.has("model", family) or family == "pretrained":
        raise UserError(f"{path / 'model.json'}: family '{family}' is not a model this installation has "
                        f"(is the plugin that registers it installed?)")
    model_args = registry.parse_args("model", family, desc["args"])
    own_info = shipped_info(path, desc)
    model = registry.get("model", family).factory(model_args, info=own_info)
    if torch.empty(0).device.type == "meta":
        return model
    load_checked(model, load_shipped_state(path, desc), f"{path / 'model.safetensors'}")
    model.source_hash = desc["weights"]["sha256"]  # teacher-output caches are keyed by the shipped weights
    # final/<name>.model.json describes the model as its family, so a run's models load without this folder
    setattr(model, DESCRIBED_AS, {"family": family, "args": desc["args"], "info": own_info})
    return model.eval()


def units(args: PretrainedArgs) -> list[str] | None:
    """The shipped model's output units (for ``data.tokenizer: {from_teacher: NAME}``)."""
    found = read_shipped(folder(args)).get("units")
    return list(found) if isinstance(found, list) else None


@hookimpl
def compressor_register(registry: Registry) -> None:
    def reads(args: PretrainedArgs) -> tuple[str, ...] | None:
        desc = read_shipped(folder(args))
        family = desc["family"]
        if not registry.has("model", family) or family == "pretrained":
            return ()
        return registry.model_reads(family, registry.parse_args("model", family, desc["args"])) or ()

    registry.add("model", "pretrained", build_pretrained, args=PretrainedArgs, units=units, reads=reads,
                 check_data=check_data,
                 doc="A shipped model (compressor teacher ship): model.safetensors + model.json, from "
                     "compressor/pretrained/<id> or a folder; built as its recorded family, weights checked by "
                     "SHA-256 and read without pickle.")
