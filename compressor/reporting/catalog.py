"""``compressor plugins``: every plugin, the components it registers and their argument schemas.

Types are shown as a spec author writes values, in YAML: ``Literal["kl", "mse"]`` is ``kl | mse``,
``Optional[int]`` is ``int | null``, a nested schema is ``{teacher: list[str], student: list[str]}``;
bounds follow the type (``int >= 1``) and defaults are YAML (``null``, ``{name: constant, value: 1.0}``).
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from compressor.core.errors import UserError, did_you_mean

_KIND_TITLES = {"model": "models", "task": "tasks", "dataset": "datasets", "schedule": "schedules",
                "strategy": "strategies", "exporter": "exporters", "export_unit": "export units",
                "optimizer": "optimizers", "lr_schedule": "LR schedules", "weights_reader": "weights readers"}


def yaml_value(value: Any) -> str:
    """A value as it would be written in a spec (YAML flow style)."""
    def plain(v: Any) -> Any:
        if isinstance(v, BaseModel):
            return plain(v.model_dump())
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple, set)):
            return [plain(x) for x in v]
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        return str(v)

    text = yaml.safe_dump(plain(value), default_flow_style=True, width=10**6, allow_unicode=True,
                          sort_keys=False).strip()
    return text[:-4].strip() if text.endswith("\n...") else text.removesuffix("...").strip()


def type_text(ann: Any) -> str:
    """A readable type: ``kl | mse``, ``int | null``, ``list[str]``, ``{start: float, end: float}``."""
    if ann is type(None) or ann is None:
        return "null"
    if ann is Any:
        return "any"
    origin, args = get_origin(ann), get_args(ann)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is Literal:
        return " | ".join(yaml_value(a) for a in args)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        return " | ".join(dict.fromkeys(parts))
    if origin in (list, set, frozenset):
        return f"list[{type_text(args[0]) if args else 'any'}]"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list[{type_text(args[0])}]"
        return "[" + ", ".join(type_text(a) for a in args) + "]" if args else "list"
    if origin is dict:
        if args and args[1] is not Any:
            return f"mapping of {type_text(args[0])} to {type_text(args[1])}"
        return "mapping"
    from compressor.core.schedules import ScheduleArg

    if isinstance(ann, type) and issubclass(ann, ScheduleArg):
        return "number | schedule {name: SCHEDULE, ...}"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "{" + ", ".join(f"{name}: {type_text(f.annotation)}" for name, f in ann.model_fields.items()) + "}"
    if isinstance(ann, type):
        return {"str": "str", "int": "int", "float": "float", "bool": "bool"}.get(ann.__name__, ann.__name__)
    return str(ann).replace("typing.", "")


def choices(ann: Any) -> list[Any] | None:
    """The allowed values when a type is (or includes) a ``Literal``: ``["kl", "mse"]``; else None."""
    found: list[Any] = []
    origin, args = get_origin(ann), get_args(ann)
    if origin is Literal:
        found.extend(args)
    elif origin is typing.Annotated:
        return choices(args[0])
    elif origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        for a in args:
            if a is type(None):
                found.append(None)
            else:
                found.extend(choices(a) or [])
    return found or None


def bounds(field: Any) -> str:
    """``>= 1``, ``> 0, <= 1``: numeric and length bounds of a pydantic field."""
    out = []
    for m in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                out.append(f"{sign} {getattr(m, attr)}")
        if getattr(m, "min_length", None) is not None:
            out.append(f"at least {m.min_length} item{'s' if m.min_length != 1 else ''}")
        if getattr(m, "max_length", None) is not None:
            out.append(f"at most {m.max_length} items")
    return ", ".join(out)


def schema_rows(schema: type[BaseModel]) -> list[dict[str, Any]]:
    """One row per argument: name, readable type, allowed values, bounds, default, whether required, doc."""
    rows = []
    for name, f in schema.model_fields.items():
        required = f.default is PydanticUndefined and f.default_factory is None
        if required:
            default: Any = None
        elif f.default is not PydanticUndefined:
            default = f.default
        else:
            try:
                default = f.default_factory()  # type: ignore[call-arg,misc]
            except TypeError:
                default = None
        rows.append({"name": name, "type": type_text(f.annotation), "choices": choices(f.annotation),
                     "bounds": bounds(f), "required": required, "default": default, "doc": f.description or ""})
    return rows


def _arg_line(row: dict[str, Any]) -> str:
    kind = row["type"] + (f" ({row['bounds']})" if row["bounds"] else "")
    value = "required" if row["required"] else f"= {yaml_value(row['default'])}"
    doc = f"  — {row['doc']}" if row["doc"] else ""
    return f"{row['name']}: {kind} {value}{doc}"


def _hook_methods(obj: Any) -> list[str]:
    return sorted(n for n in dir(obj) if n.startswith("compressor_") and hasattr(getattr(obj, n), "compressor_impl"))


def catalog() -> list[dict[str, Any]]:
    """Every loaded plugin with its components (see :func:`schema_rows`)."""
    from compressor.core.registry import KINDS
    from compressor.plugins import get_plugins

    plugins = get_plugins()
    out = []
    for info in plugins.loaded:
        components = []
        for entry in plugins.registry.entries():
            if entry.package != f"{info.package} ({info.name})":
                continue
            item: dict[str, Any] = {"kind": entry.kind, "name": entry.name, "doc": entry.doc,
                                    "args": schema_rows(entry.args)}
            if entry.kind == "strategy":
                item["hooks"] = _hook_methods(entry.factory)
                item["needs_teacher"] = bool(getattr(entry.factory, "needs_teacher", True))  # baseline drops it
            components.append(item)
        components.sort(key=lambda c: (KINDS.index(c["kind"]) if c["kind"] in KINDS else len(KINDS), c["name"]))
        out.append({"plugin": info.name, "package": info.package, "version": info.version,
                    "module": getattr(info.module, "__name__", str(info.module)),
                    "hooks": plugins.hooks_of(info.module), "components": components})
    return out


def _select(plugins: list[dict[str, Any]], names: list[str], kind: str | None) -> list[dict[str, Any]]:
    from compressor.core.registry import KINDS

    if kind is not None and kind not in KINDS:
        raise UserError(f"--kind: no kind '{kind}'{did_you_mean(kind, KINDS)}")
    known = {c["name"] for p in plugins for c in p["components"]} | {p["plugin"] for p in plugins}
    for name in names:
        if name not in known:
            raise UserError(f"no plugin or component '{name}'{did_you_mean(name, known)}")
    out = []
    for p in plugins:
        whole = p["plugin"] in names
        comps = [c for c in p["components"] if (not names or whole or c["name"] in names)
                 and (kind is None or c["kind"] == kind)]
        if comps or (not names and kind is None) or (whole and kind is None):
            out.append({**p, "components": comps})
    return out


def print_catalog(names: list[str] | None = None, kind: str | None = None, as_json: bool = False) -> int:
    """What ``compressor plugins [NAME ...] [--kind KIND] [--json]`` prints; returns the exit code."""
    plugins = _select(catalog(), list(names or []), kind)
    if as_json:
        print(json.dumps(plugins, indent=2, default=str))
        return 0
    for p in plugins:
        print(f"{p['plugin']}  ({p['package']} {p['version']}, {p['module']})")
        if p["hooks"] and p["hooks"] != ["compressor_register"]:
            print(f"  hooks: {', '.join(p['hooks'])}")
        shown_kind = None
        for c in p["components"]:
            if c["kind"] != shown_kind:
                shown_kind = c["kind"]
                print(f"  {_KIND_TITLES.get(shown_kind, shown_kind)}:")
            print(f"    {c['name']}: {c['doc']}" if c["doc"] else f"    {c['name']}")
            if c.get("hooks"):
                print(f"      hooks: {', '.join(c['hooks'])}")
            for row in c["args"]:
                print(f"      {_arg_line(row)}")
    return 0
