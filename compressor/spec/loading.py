"""Reading a spec file (bounded, safe YAML: :mod:`compressor.spec.safe_yaml`) and applying ``--set`` overrides."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from compressor.core.errors import SpecError
from compressor.spec.safe_yaml import MAX_BYTES, MAX_DEPTH, YamlError, load_yaml


def read_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse a YAML file safely and within bounds (see :mod:`compressor.spec.safe_yaml`); return the data and a
    map from key paths to line numbers."""
    path = Path(path)
    try:
        if path.is_dir():
            raise SpecError(f"expected a YAML file, got a directory: {path}", file=str(path))
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}", file=str(path)) from None
    except OSError as e:
        raise SpecError(f"cannot read the spec: {e.strerror or e}", file=str(path)) from None
    if len(raw) > MAX_BYTES:
        raise SpecError(f"larger than {MAX_BYTES // 1024} KiB: a spec is a page of YAML", file=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not a UTF-8 text file ({e.reason})", file=str(path)) from None
    try:
        return load_yaml(text)
    except YamlError as e:
        raise SpecError(e.message, file=str(path), line=e.line) from None


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``stages[1].epochs=3`` or ``stages.1.epochs=3`` -> (["stages", 1, "epochs"], 3)."""
    if "=" not in text:
        raise SpecError(f"--set expects KEY.PATH=VALUE, got '{text}'", file="--set")
    key, value = text.split("=", 1)
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+", key.strip()):
        parts.append(int(token) if token.isdigit() else token)
    if not parts:
        raise SpecError(f"--set has an empty key path in '{text}'", file="--set")
    if len(parts) > MAX_DEPTH:
        raise SpecError(f"key path deeper than {MAX_DEPTH} levels", file=set_flag(text))
    try:
        parsed = load_yaml(value)[0] if value.strip() else ""
    except YamlError as e:
        if e.malformed:
            parsed = value  # not YAML: the text itself
        else:
            raise SpecError(e.message, file=set_flag(text)) from None
    return parts, parsed


def set_flag(text: str) -> str:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return f"--set {shown}"


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        flag = set_flag(text)
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise SpecError(f"no list item {part} (the list has {len(node)})", parts[:i + 1], flag)
                node = node[part]
            elif isinstance(node, dict):
                if part not in node or node[part] is None:
                    node[part] = [] if isinstance(nxt, int) else {}
                node = node[part]
            else:
                raise SpecError("cannot descend into a scalar value", parts[:i + 1], flag)
        last = parts[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last > len(node):
                raise SpecError(f"no list item {last} (the list has {len(node)})", parts, flag)
            if last == len(node):
                node.append(value)
            else:
                node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise SpecError("cannot set a key inside a scalar value", parts, flag)
    return data


def dump_spec(raw: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(raw), sort_keys=False)
