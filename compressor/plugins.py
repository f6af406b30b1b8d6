"""Plugin discovery and hook calls.

All plugins, built-in or third-party, are found through the ``compressor.plugins`` entry-point group
(:data:`compressor.core.hookspecs.ENTRY_POINT_GROUP`). Each is registered with one pluggy ``PluginManager``;
strategies are registered per stage (see :func:`stage_strategies`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pluggy

from compressor.core import hookspecs
from compressor.core.envcheck import diagnose
from compressor.core.errors import PluginError, UserError
from compressor.core.registry import Registry


@dataclass
class PluginInfo:
    name: str
    package: str
    version: str
    module: Any


class Plugins:
    """The plugin manager, the registry it filled, and what was loaded from where."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.pm.hook.compressor_register.call_historic(kwargs={"registry": self.registry})
        self.loaded: list[PluginInfo] = []

    def load_entry_points(self) -> None:
        for ep in sorted(md.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda e: e.name):
            if self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
            except (Exception, SystemExit) as e:
                # Packages that do not load together (torch/torchaudio) are the environment's fault: exit 2 with
                # the fix; anything else is the plugin's own fault: exit 1, named.
                clash = diagnose(e, where=f"plugin '{ep.name}' ({ep.value})")
                if clash is not None:
                    raise clash from e
                raise PluginError(ep.name, "import", e, action=f"({ep.value}) failed to import") from e
            dist = ep.dist
            self.add(ep.name, module, dist.name if dist else "?", dist.version if dist else "?")

    def add(self, name: str, module: Any, package: str = "?", version: str = "?") -> None:
        """Register a plugin module/object; its ``compressor_register`` adds its components.

        ``compressor_register`` is a historic hook: pluggy calls it for each plugin as that plugin registers.
        """
        self.registry.current_package = f"{package} ({name})"
        try:
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError:
            raise
        except PluginError:
            raise
        except (Exception, SystemExit) as e:
            raise PluginError(name, "compressor_register", e) from e
        finally:
            self.registry.current_package = "?"
        try:
            check_known_hooks(self.pm, module, name)
        except PluginError:
            self.pm.unregister(module)
            raise
        self.loaded.append(PluginInfo(name, package, version, module))

    def hooks_of(self, plugin: Any) -> list[str]:
        return sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])

    def call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call a hook through pluggy (``pm.hook.<hook>``); failures name the plugin and the hook.

        pluggy orders the implementations (most recently registered first, ``tryfirst``/``trylast`` honoured),
        runs hook wrappers around them, honours ``firstresult`` and reports to ``pm.trace`` and to hook-call
        monitors. Returns the implementations' non-None results; for a ``firstresult`` hook, at most one.

        ``SystemExit`` (a plugin calling ``sys.exit``) is a plugin failure too: it must not end a run quietly. A
        :class:`UserError` stays one (exit code 2), prefixed with the plugin's name.
        """
        caller = getattr(self.pm.hook, hook)
        try:
            out = caller(**kwargs)
        except PluginError:
            raise
        except UserError as e:  # the plugin says the input is at fault: exit 2, still naming it
            raise UserError(f"plugin '{_culprit(caller, e).split('#')[0]}': {e}") from None
        except (Exception, SystemExit) as e:
            raise PluginError(_culprit(caller, e), hook, e) from e
        if caller.spec is not None and caller.spec.opts.get("firstresult"):
            return [] if out is None else [out]
        return list(out)


def check_known_hooks(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    """Refuse a plugin implementing a hook no spec declares (misspelt, or removed): it would never be called."""
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.spec is None and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls()):
            known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("compressor_")))
            raise PluginError(name, caller.name, LookupError(f"no such hook; the hooks are: {known}"),
                              action=f"implements an unknown hook '{caller.name}'")


def _culprit(caller: pluggy.HookCaller, error: BaseException) -> str:
    """The registered name of the implementation (or wrapper) ``error`` was raised in.

    The innermost traceback frame that runs one of the hook's implementations is the failing one; a strategy
    registered twice in a stage shares its code, so the frame's ``self`` tells the instances apart.
    """
    impls = caller.get_hookimpls()
    tb = error.__traceback__
    found = None
    while tb is not None:
        frame = tb.tb_frame
        for impl in impls:
            fn = impl.function
            if getattr(fn, "__code__", None) is not frame.f_code:
                continue
            owner = getattr(fn, "__self__", None)
            if owner is None or frame.f_locals.get("self") is owner:
                found = impl.plugin_name
                break
        tb = tb.tb_next
    if found is None:  # raised by pluggy itself, or by a decorated implementation: name what was called
        found = ", ".join(sorted({i.plugin_name.split("#")[0] for i in impls})) or "?"
    return found


_PLUGINS: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin manager, loading entry points on first use."""
    global _PLUGINS
    if _PLUGINS is None:
        plugins = Plugins()
        plugins.load_entry_points()
        _PLUGINS = plugins
    return _PLUGINS


def loaded_plugins() -> list[PluginInfo]:
    """The plugins loaded so far in this process (none before :func:`get_plugins`)."""
    return list(_PLUGINS.loaded) if _PLUGINS is not None else []


def get_registry() -> Registry:
    return get_plugins().registry


def reset_plugins() -> None:
    """Forget loaded plugins (tests that install a package at run time call this)."""
    global _PLUGINS
    _PLUGINS = None


@contextlib.contextmanager
def stage_strategies(plugins: Plugins, strategies: list[tuple[str, Any]]) -> Iterator[None]:
    """Register strategy instances for the duration of one stage."""
    names = []
    try:
        for i, (name, obj) in enumerate(strategies):
            reg_name = f"{name}#{i}"
            plugins.pm.register(obj, name=reg_name)
            names.append(reg_name)
            check_known_hooks(plugins.pm, obj, reg_name)
        yield
    finally:
        for reg_name in names:
            plugins.pm.unregister(name=reg_name)
