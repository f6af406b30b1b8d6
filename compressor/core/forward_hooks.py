"""Forward hooks on named submodules of a model: capture their outputs, or replace them, and remove every
hook reliably.

::

    with ForwardHooks(model) as hooks:
        captured = hooks.capture(["encoder.layers.3"])
        model(batch)
    h = captured["encoder.layers.3"]          # the raw output (a tuple for an LSTM)

Hooks that last a whole stage are kept on a :class:`ForwardHooks` object and removed with :meth:`remove`
(at the end of the stage); ``when`` makes a hook act only in some forward passes (training ones, say).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn


class ForwardHooks:
    """The forward hooks one owner puts on the named submodules of ``model``; removed together."""

    def __init__(self, model: nn.Module) -> None:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        self.model = model
        #: the latest output of every captured module, by name
        self.captured: dict[str, Any] = {}
        self._named = dict(model.named_modules())
        self._handles: list[Any] = []

    def module(self, name: str) -> nn.Module:
        """The submodule called ``name`` (``KeyError`` if the model has none)."""
        if not name or name not in self._named:
            raise KeyError(f"no module '{name}'")
        return self._named[name]

    def capture(self, names: Iterable[str], when: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Keep the output of each named module in :attr:`captured` (returned) whenever it runs (and
        ``when()`` is true); the output is kept as the module returns it, gradients included."""
        for name in names:
            def keep(_m: nn.Module, _i: Any, output: Any, name: str = name) -> None:
                if when is None or when():
                    self.captured[name] = output

            self._handles.append(self.module(name).register_forward_hook(keep))
        return self.captured

    def replace(self, name: str, fn: Callable[[nn.Module, Any], Any]) -> None:
        """Let ``fn(module, output)`` replace the named module's output: what it returns is passed on in its
        place, unless it returns None (the output stays as it is)."""
        def swap(module: nn.Module, _i: Any, output: Any) -> Any:
            return fn(module, output)

        self._handles.append(self.module(name).register_forward_hook(swap))

    def clear(self) -> None:
        """Forget the captured outputs (the hooks stay)."""
        self.captured.clear()

    def remove(self) -> None:
        """Remove every hook this object put on the model (idempotent)."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def __enter__(self) -> ForwardHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
