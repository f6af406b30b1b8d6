"""Model descriptions: beside every ``final/<model>.pt`` a ``final/<model>.model.json`` saying what it takes to
rebuild that model without its dataset.

A description holds the model family (its registry name) and resolved arguments, the data facts the model
and task were built with (``info``: vocabulary, feature configuration, labels), the output units, the
tokenizer files (copied beside it as ``<model>.tokens.txt`` / ``<model>.bpe.model``), the package versions
that wrote it and the SHA-256 of the weights file, checked when the model is loaded. ``compressor eval``,
``compressor export`` and ``init_from`` read it instead of building the run's data; a run directory without
descriptions (written by an older version) is loaded the old way, by building its data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressor.core.checkpoint import file_sha256, load_checked, load_state_dict_file, write_atomic
from compressor.core.errors import UserError

FORMAT = 1
SUFFIX = ".model.json"
FRAME_SHIFT_MS = 10.0
#: data facts that name files: copied beside the description, the copy's name stored
_FILE_KEYS = {"tokens_file": ".tokens.txt", "bpe_model": ".bpe.model"}
#: a model built from files made elsewhere (a shipped model) names, in this attribute, the family, arguments and
#: data facts it is described by: ``{"family": ..., "args": ..., "info": ...}``
DESCRIBED_AS = "described_as"


def description_path(weights: Path) -> Path:
    """``final/<model>.model.json`` for ``final/<model>.pt``."""
    weights = Path(weights)
    return weights.with_name(weights.stem + SUFFIX)


def _json_safe(info: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``info`` that JSON holds as they are (the rest cannot be part of a description)."""
    out = {}
    for key, value in info.items():
        try:
            if json.loads(json.dumps(value)) == value:
                out[key] = value
        except (TypeError, ValueError):
            continue
    return out


def describe(weights: Path, family: str, args: dict[str, Any], info: dict[str, Any], task: str | None = None
             ) -> dict[str, Any]:
    """The description of the model whose weights are the file ``weights`` (see the module docstring);
    tokenizer files named by ``info`` are copied beside ``weights``."""
    import compressor

    weights = Path(weights)
    dropped = sorted(k for k in info if k not in _json_safe(info))
    info = _json_safe(info)
    files: dict[str, str] = {}
    for key, suffix in _FILE_KEYS.items():
        src = info.get(key)
        if isinstance(src, str) and Path(src).is_file():
            dest = weights.with_name(weights.stem + suffix)
            write_atomic(dest, Path(src).read_bytes())
            files[key] = dest.name
    units = info.get("tokens") or info.get("labels")
    return {
        "format": FORMAT,
        "family": family,
        "args": args,
        "task": task,
        "units": list(units) if isinstance(units, list) else None,
        "tokenizer": {"kind": info.get("tokenizer"), "vocab_size": info.get("vocab_size"),
                      "blank_id": info.get("blank_id"), "files": files},
        "features": {"kind": info.get("frontend"), "dim": info.get("feature_dim"),
                     "frame_shift_ms": FRAME_SHIFT_MS if "feature_dim" in info else None,
                     "sample_rate": info.get("sample_rate"), "normalize": info.get("normalize_type")},
        "info": info,
        "info_left_out": dropped,  # data facts JSON cannot hold: such a model is loaded the old way, with its data
        "versions": {"compressor": compressor.__version__, "torch": torch.__version__},
        "weights": {"file": weights.name, "sha256": file_sha256(weights)},
    }


def write_description(weights: Path, family: str, args: dict[str, Any], info: dict[str, Any],
                      task: str | None = None) -> Path:
    """Write ``final/<model>.model.json`` beside ``weights`` atomically; return its path."""
    path = description_path(weights)
    write_atomic(path, json.dumps(describe(weights, family, args, info, task), indent=1))
    return path


def read_description(weights: Path) -> dict[str, Any] | None:
    """The description beside ``weights``, or None when there is none (a run of an older version). A
    description that does not parse is refused with one line naming it."""
    path = description_path(weights)
    if not path.exists():
        return None
    return parse_description(path)


def parse_description(path: Path) -> dict[str, Any]:
    """A model description file read and checked (family, args, format), or one line naming what is wrong."""
    try:
        desc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable model description ({e})") from None
    if not isinstance(desc, dict) or not isinstance(desc.get("family"), str) or not isinstance(desc.get("args"),
                                                                                                 dict):
        raise UserError(f"{path}: not a model description (no 'family' and 'args')")
    if desc.get("format") != FORMAT:
        raise UserError(f"{path}: description format {desc.get('format')!r}, this version reads {FORMAT}")
    return desc


def complete(desc: dict[str, Any]) -> bool:
    """The description holds every data fact the model was built with (none left out as not JSON)."""
    return not desc.get("info_left_out")


def verify_weights(weights: Path, desc: dict[str, Any]) -> None:
    """Refuse ``weights`` whose SHA-256 is not the one its description recorded (changed since written)."""
    expected = (desc.get("weights") or {}).get("sha256")
    if not Path(weights).exists():
        raise UserError(f"{weights} is missing (its description {description_path(weights).name} names it)")
    if expected != file_sha256(weights):
        raise UserError(f"{weights}: SHA-256 does not match {description_path(weights).name} (the weights "
                        f"changed since the run wrote them)")


def described_info(weights: Path, desc: dict[str, Any]) -> dict[str, Any]:
    """The data facts of a description, its tokenizer files pointing at the copies beside ``weights``."""
    info = dict(desc.get("info") or {})
    for key, name in ((desc.get("tokenizer") or {}).get("files") or {}).items():
        info[key] = str(Path(weights).with_name(name))
    return info


def load_described(weights: Path, desc: dict[str, Any], registry: Any, what: str) -> nn.Module:
    """Build the model a description names (family, arguments, data facts) and load its checked weights."""
    verify_weights(weights, desc)
    entry = registry.get("model", desc["family"])
    args = registry.parse_args("model", desc["family"], desc["args"])
    model = entry.factory(args, info=described_info(weights, desc))
    load_checked(model, load_state_dict_file(weights), what)
    return model.eval()


class LazyData:
    """A run's data known by its facts (``info``, from a model description) and built only when something
    other than ``info`` is asked of it (batches for an evaluation or an export's checks)."""

    def __init__(self, info: dict[str, Any], build: Callable[[], Any]) -> None:
        self.info = info
        self._build = build
        self._data: Any = None

    @property
    def built(self) -> bool:
        return self._data is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_build", "_data", "info"):
            raise AttributeError(name)
        if self._data is None:
            self._data = self._build()
        return getattr(self._data, name)

