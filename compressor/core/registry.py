"""Component registries: a spec names components by key, the registry resolves them.

Every component kind (models, tasks, datasets, schedules, strategies, exporters, a model family's export unit,
optimizers, LR schedules) lives in one
:class:`Registry`. Plugins add to it from the :func:`compressor.core.hookspecs.compressor_register` hook::

    @hookimpl
    def compressor_register(registry):
        registry.add("model", "my_lstm", build_my_lstm, args=MyLstmArgs, doc="A small LSTM.")

Each entry carries a pydantic model describing its arguments, so specs are validated before any work
and ``compressor plugins`` can print every argument schema.

A factory may be named instead of imported, ``"package.module:attribute"``, with its ``args`` schema and
``doc`` given: the module is imported when the component is first built, so a component whose code needs
heavy libraries (an exporter needing onnx) does not slow down ``compressor plugins`` or ``validate``::

    registry.add("exporter", "my_onnx", "my_package.exporter:MyExporter", args=MyExporterArgs, doc="...")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from compressor.core.errors import PluginError, SpecError, UserError, did_you_mean

KINDS = ("model", "task", "dataset", "schedule", "strategy", "exporter", "export_unit", "optimizer", "lr_schedule",
         "weights_reader")


class Args(BaseModel):
    """Base class for argument schemas: unknown keys are errors, values are validated strictly, and float
    fields refuse inf and NaN (a schema that wants them sets ``allow_inf_nan=True`` on its field)."""

    model_config = ConfigDict(extra="forbid", frozen=False, arbitrary_types_allowed=True, allow_inf_nan=False)


class NoArgs(Args):
    """A component that takes no arguments."""


class LazyFactory:
    """A factory named ``"module:attribute"``, imported on first use (a call or an attribute).

    An import that fails names the component and its package (:class:`compressor.core.errors.PluginError`, exit 1),
    or says which package to install when a dependency is missing (exit 2), as entry points do.
    """

    def __init__(self, target: str, kind: str, name: str, package: str) -> None:
        if ":" not in target:
            raise ValueError(f"{kind} '{name}': a lazy factory is 'module:attribute', got '{target}'")
        self.target = target
        self.kind = kind
        self.name = name
        self.package = package
        self._resolved: Any = None

    def resolve(self) -> Any:
        if self._resolved is None:
            import importlib

            module, _, attr = self.target.partition(":")
            try:
                obj: Any = importlib.import_module(module)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except (Exception, SystemExit) as e:
                from compressor.core.envcheck import diagnose
                from compressor.core.errors import PluginError

                clash = diagnose(e, where=f"{self.kind} '{self.name}' ({self.target})")
                if clash is not None:
                    raise clash from e
                raise PluginError(self.name, "import", e, action=f"({self.target}) failed to import",
                                  package=self.package, subject=f"{self.kind} '{self.name}'") from e
            self._resolved = obj
        return self._resolved

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr in ("target", "kind", "name", "package", "_resolved"):
            raise AttributeError(attr)
        return getattr(self.resolve(), attr)

    def __dir__(self) -> list[str]:
        return dir(self.resolve())

    def __repr__(self) -> str:
        return f"<lazy {self.kind} {self.name}: {self.target}>"


@dataclass
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    args: type[BaseModel] = NoArgs
    doc: str = ""
    package: str = "?"
    extra: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Name -> component, per kind."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        self.current_package = "?"

    def add(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any] | str,
        args: type[BaseModel] | None = None,
        doc: str = "",
        **extra: Any,
    ) -> Entry:
        """Register ``factory`` under ``kind``/``name``; ``args`` is its pydantic argument schema.

        ``factory`` may be ``"module:attribute"`` (imported on first use; give ``args`` and ``doc``)."""
        if kind not in self._entries:
            raise ValueError(f"unknown component kind '{kind}' (kinds: {', '.join(KINDS)})")
        if name in self._entries[kind]:
            prev = self._entries[kind][name]
            raise ValueError(f"{kind} '{name}' registered twice (by {prev.package} and {self.current_package})")
        if isinstance(factory, str):
            factory = LazyFactory(factory, kind, name, self.current_package)
            schema = args or NoArgs
        else:
            doc = doc or (factory.__doc__ or "").strip().split("\n")[0]
            schema = args or getattr(factory, "Args", NoArgs)
        entry = Entry(kind, name, factory, schema, doc, self.current_package, dict(extra))
        self._entries[kind][name] = entry
        return entry

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def has(self, kind: str, name: str) -> bool:
        return name in self._entries[kind]

    def get(self, kind: str, name: str, path: tuple = (), file: str | None = None) -> Entry:
        """The entry, or a :class:`SpecError` naming the closest valid name."""
        try:
            return self._entries[kind][name]
        except KeyError:
            raise SpecError(f"unknown {kind} '{name}'{did_you_mean(name, self._entries[kind])}",
                            path, file) from None

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        for k in [kind] if kind else KINDS:
            yield from (self._entries[k][n] for n in sorted(self._entries[k]))

    def parse_args(self, kind: str, name: str, values: Mapping[str, Any], path: tuple = ()) -> BaseModel:
        """Validate ``values`` against the entry's schema (errors carry key paths below ``path``)."""
        return validate_model(self.get(kind, name, path).args, dict(values), path, registry=self)

    def model_reads(self, family: str, args: BaseModel, optional: bool = False) -> tuple[str, ...] | None:
        """The batch keys a model of ``family`` built from ``args`` reads, as its entry declares, or None if it
        does not say.

        ``registry.add("model", ..., reads=("text",), reads_optional=("text_ids",))``; either may also be a
        function of the model's arguments (``reads=lambda args: (args.text_key,)``). ``reads`` must be in every
        batch; ``reads_optional`` are used when present (token ids a masking plugin wrote). ``optional=True``
        returns both.
        """
        extra = self.get("model", family).extra
        out: list[str] = []
        for key in ("reads", "reads_optional") if optional else ("reads",):
            value = extra.get(key)
            if value is None:
                if key == "reads":
                    return None
                continue
            out += list(value(args) if callable(value) else value)
        return tuple(out)

    def build(self, kind: str, ref: Mapping[str, Any], path: tuple = (), **context: Any) -> Any:
        """Build a component from a flat spec reference ``{name: X, arg: value, ...}``."""
        values = dict(ref)
        name = values.pop("name")
        entry = self.get(kind, name, path)
        args = self.parse_args(kind, name, values, path)
        return entry.factory(args, **context) if context else entry.factory(args)


def validate_model(schema: type[BaseModel], values: Any, path: tuple = (), registry: Registry | None = None
                   ) -> BaseModel:
    """Validate ``values`` against a pydantic schema; the first error becomes a :class:`SpecError` at ``path``.

    ``registry`` is handed to validators in pydantic's validation context (``info.context["registry"]``): a
    :class:`compressor.core.schedules.ScheduleArg` looks its schedule up there."""
    try:
        return schema.model_validate(values, context={"registry": registry} if registry is not None else None)
    except ValidationError as e:
        raise _to_spec_error(e, schema, path) from None


def _to_spec_error(e: ValidationError, schema: type[BaseModel], path: tuple) -> SpecError:
    err = e.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    full = path + loc
    kind = err["type"]
    if kind == "extra_forbidden":
        fields = _fields_at(schema, loc[:-1])
        return SpecError(f"unknown key '{loc[-1]}'{did_you_mean(str(loc[-1]), fields)}", full)
    if kind == "missing":
        return SpecError("required key is missing", full)
    given = err.get("input")
    text = repr(given)
    shown = "" if isinstance(given, (dict, list)) or given is None else (
        f" (got {text if len(text) <= 60 else text[:40] + '...' + text[-10:]})")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    msg = msg.replace("Input should be", "expected")
    return SpecError(f"{msg}{shown}", full)


def _fields_at(schema: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) pydantic model at ``loc``, for typo hints."""
    current: Any = schema
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        ann = fields[part].annotation
        current = first_model(ann)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def first_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = first_model(arg)
        if found is not None:
            return found
    return None


def build_component(entry: Entry, build: Callable[[], Any]) -> Any:
    """Build a registered component; a failure that is not the user's names the component and its package."""
    try:
        return build()
    except UserError:
        raise
    except (Exception, SystemExit) as e:
        raise PluginError(entry.name, "build", e, action="failed to build", package=entry.package,
                          subject=f"{entry.kind} '{entry.name}'") from e
