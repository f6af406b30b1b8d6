"""Shipped models: a folder holding one trained model that any spec can use as a model (``pretrained``).

A shipped folder holds:

* ``model.safetensors``: the weights (floating-point tensors as fp32), written with the ``safetensors`` package:
  reading them runs no code (no pickle);
* ``model.json``: the model's description (:mod:`compressor.core.describe`: family, resolved arguments, data
  facts, units, tokenizer, versions), its ``weights`` entry naming ``model.safetensors`` and its SHA-256, plus
  ``parameters`` (the parameter count) and ``trained`` (where it came from: spec name, steps, final metrics);
* the tokenizer files the description names (``tokens.txt``, ``bpe.model``).

The SHA-256 is checked before the weights are read; a folder is written to a temporary sibling and renamed into
place, so a folder that exists is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from compressor.core.checkpoint import file_sha256, write_atomic
from compressor.core.describe import parse_description
from compressor.core.errors import UserError

WEIGHTS = "model.safetensors"
DESCRIPTION = "model.json"
#: the names tokenizer files get in a shipped folder, by the data fact that names them
TOKENIZER_FILES = {"tokens_file": "tokens.txt", "bpe_model": "bpe.model"}


def _fp32_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous copies (safetensors refuses tensors sharing memory), floating point ones as fp32."""
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()).contiguous().clone()
            for k, v in state.items()}


def write_shipped(out: Path, state: dict[str, torch.Tensor], desc: dict[str, Any], files: dict[str, Path],
                  trained: dict[str, Any], parameters: int, force: bool = False) -> Path:
    """Write the shipped folder ``out`` (see the module docstring) from a state dict, its description, the
    tokenizer files (``files``: data fact -> source file) and the model's parameter count, atomically; an
    existing ``out`` is refused unless ``force``."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and not force:
        raise UserError(f"{out} already exists (give --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tensors = _fp32_state(state)
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        desc = json.loads(json.dumps(desc))
        names: dict[str, str] = {}
        for key, src in files.items():
            names[key] = TOKENIZER_FILES[key]
            shutil.copyfile(src, tmp / names[key])
        desc.setdefault("tokenizer", {})["files"] = names
        desc["weights"] = {"file": WEIGHTS, "sha256": file_sha256(tmp / WEIGHTS), "format": "safetensors",
                           "dtype": "float32"}
        desc["parameters"] = parameters
        desc["trained"] = trained
        write_atomic(tmp / DESCRIPTION, json.dumps(desc, indent=1))
        umask = os.umask(0)
        os.umask(umask)
        for f in tmp.iterdir():  # readable as any installed package file (mkdtemp and safetensors write 0600)
            os.chmod(f, 0o666 & ~umask)
        os.chmod(tmp, 0o777 & ~umask)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_shipped(folder: Path) -> dict[str, Any]:
    """The description (``model.json``) of the shipped folder ``folder``, checked for its shape; one line naming
    the file otherwise. Reads no weights."""
    folder = Path(folder)
    path = folder / DESCRIPTION
    if not folder.is_dir():
        raise UserError(f"{folder}: no such shipped model folder")
    if not path.is_file():
        raise UserError(f"{path} is missing: {folder} is not a shipped model folder")
    desc = parse_description(path)
    weights = desc.get("weights") or {}
    if weights.get("file") != WEIGHTS or not isinstance(weights.get("sha256"), str):
        raise UserError(f"{path}: its 'weights' entry does not name {WEIGHTS} with a sha256")
    return desc


def shipped_info(folder: Path, desc: dict[str, Any]) -> dict[str, Any]:
    """The data facts the shipped model was built with, its tokenizer files pointing into ``folder``."""
    info = dict(desc.get("info") or {})
    for key, name in ((desc.get("tokenizer") or {}).get("files") or {}).items():
        if key in TOKENIZER_FILES and name == TOKENIZER_FILES[key]:  # only the names this format writes
            info[key] = str(Path(folder) / name)
    return info


def load_shipped_state(folder: Path, desc: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of the shipped folder, read with safetensors after their SHA-256 matched ``model.json``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise UserError(f"{path} is missing (its {DESCRIPTION} names it)")
    if file_sha256(path) != desc["weights"]["sha256"]:
        raise UserError(f"{path}: SHA-256 does not match {Path(folder) / DESCRIPTION} (the weights changed since "
                        f"the model was shipped); refused")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({e})") from None
