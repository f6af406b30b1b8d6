"""The hook contract between the engine and its plugins.

compressor uses `pluggy <https://pluggy.readthedocs.io>`_, the plugin system of pytest. A plugin is a module
(or object) with functions decorated by :data:`hookimpl` whose names match the specifications below. Plugins
are discovered through the ``compressor.plugins`` entry-point group; the built-in ones load through that same
group, so a third-party package is a first-class citizen::

    # pyproject.toml of your package
    [project.entry-points."compressor.plugins"]
    hint_kd = "my_package.hint_kd"

There are two kinds of hook implementations:

* **Module-level** implementations are registered once, when the plugin loads. The important one is
  :func:`compressor_register`, which adds components (models, tasks, datasets, schedules, strategies,
  exporters) to the registry so specs can name them.
* **Strategy** implementations are methods of a :class:`compressor.core.strategy.Strategy` subclass. The engine
  instantiates a strategy for every stage that lists it under ``plugins:`` and registers the instance for the
  duration of that stage only, so its hooks fire only where the spec activates it.

Every hook is called with keyword arguments; an implementation may accept any subset of them. Hooks are
called through pluggy for all registered implementations, most recently registered first
(``@hookimpl(tryfirst=True)`` / ``trylast=True`` move one to the front / back), and their non-None results
are collected; a hook marked ``firstresult`` stops at the first non-None result. A hook wrapper
(``@hookimpl(wrapper=True)``, a generator that yields once) runs around the other implementations of its
hook and sees their result, and ``pm.trace`` / ``pm.add_hookcall_monitoring`` see every call.

An exception inside an implementation (or a wrapper) stops the run with a message that names the plugin and
the hook (:class:`compressor.core.errors.PluginError`, exit code 1); so does ``sys.exit()``. A
:class:`compressor.core.errors.UserError` raised by a hook is reported as bad input (exit code 2), prefixed with the
plugin's name.

The ``ctx`` argument of the training hooks is the :class:`compressor.core.context.StageContext` of the stage being
run: the models by name, the task, the data, the step and epoch counters, and
:meth:`~compressor.core.context.StageContext.log_scalar` for values that should be logged and plotted (a KD weight, a
replacing rate); that of :func:`compressor_export` is the export's :class:`compressor.export.base.ExportJob`.

Order of calls in one stage::

    compressor_prepare_models
    for each epoch:
        for each batch:
            compressor_step_start
            compressor_transform_batch          (training batches only)
            task.forward -> outputs
            compressor_loss_terms               (after the task's own "task" term is in)
            backward, optimizer step
        evaluation (when due)
        compressor_epoch_end
    compressor_finalize_student
    (export) compressor_export            (ctx is the export's ExportJob)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from torch import Tensor, nn

    from compressor.core.context import StageContext
    from compressor.core.losses import LossTerms
    from compressor.core.registry import Registry

PROJECT = "compressor"
ENTRY_POINT_GROUP = "compressor.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(historic=True)
def compressor_register(registry: Registry) -> None:
    """Add components to the registry.

    :param registry: call ``registry.add(kind, name, factory, args=ArgsModel, doc=...)`` with ``kind`` one
        of ``model``, ``task``, ``dataset``, ``schedule``, ``strategy``, ``exporter``. ``args`` is a
        pydantic model (subclass :class:`compressor.core.registry.Args`) that validates the spec's arguments.

    Called once per plugin at start-up, before any spec is validated: a historic hook, so pluggy calls it for
    each plugin as that plugin is registered.
    """


@hookspec
def compressor_prepare_models(ctx: StageContext) -> None:
    """Prepare the models for a stage: freeze, wrap, swap parts, load weights.

    :param ctx: ``ctx.models`` maps names (``teacher``, ``student``, ...) to modules and may be changed in
        place: add a wrapper model and point ``ctx.forward_model`` at its name to train through it. The
        engine has already frozen the stage's ``frozen`` models and moved all models to ``ctx.device``.

    Called once at the start of the stage (also on resume, before the checkpoint's weights are loaded, so
    it must build the same structure every time). The optimizer is created afterwards from the parameters
    that still require gradients in the stage's ``train`` models, the ``forward_model`` and every model a
    plugin added to ``ctx.models`` (a hint regressor, say); all of ``ctx.models`` is checkpointed.
    """


@hookspec
def compressor_step_start(ctx: StageContext) -> None:
    """Called before each optimizer step's forward passes (``ctx.step`` is the number of steps done).

    Use it to update a schedule (``ctx.log_scalar("replacing_rate", p)``) or draw per-step randomness. Draw
    from torch's global generator so that a resumed run repeats the same draws.
    """


@hookspec
def compressor_transform_batch(ctx: StageContext, batch: dict[str, Any]) -> None:
    """Transform a training batch in place (masking, augmentation) before the forward pass.

    :param batch: the collated batch, already on ``ctx.device``. Replace entries (``batch["features"] =
        ...``) rather than writing into its tensors, which may be shared with the loader.
    """


@hookspec
def compressor_loss_terms(
    ctx: StageContext, batch: dict[str, Any], outputs: dict[str, Tensor], losses: LossTerms
) -> None:
    """Contribute named loss terms for this batch.

    :param outputs: what the task's forward returned for ``ctx.forward_model``.
    :param losses: already holds the task's own term ``"task"``. Call ``losses.add(name, value, weight)``
        to add a term, ``losses.set_weight("task", alpha)`` to re-weight one. The engine minimises
        ``sum(weight * value)`` and logs every term's value and weight.
    """


@hookspec
def compressor_epoch_end(ctx: StageContext, metrics: dict[str, float]) -> None:
    """Called at the end of each epoch with the epoch's metrics (validation metrics when evaluated)."""


@hookspec
def compressor_finalize_student(ctx: StageContext) -> None:
    """Called at the end of a stage, before the models are handed to the next stage.

    Put the result of the stage into the named models (for example, combine trained student modules into
    ``ctx.models["student"]``) and remove wrappers added in :func:`compressor_prepare_models`.
    """


@hookspec
def compressor_export(ctx: Any, model: nn.Module, out_dir: Path) -> list[Path] | None:
    """Write extra export artefacts for ``model`` into ``out_dir``; return the paths written.

    :param ctx: the export's :class:`compressor.export.base.ExportJob`: the model's name and spec entry, the
        task, the data, the run directory, the exporter's name and validated arguments.
    :param out_dir: the export's temporary folder (``ctx.out_dir``), moved into place when complete.

    Called by ``compressor export`` and the spec's export step after the exporter for the model's family has
    written its files. The built-in export plugin wraps this hook and writes ``export_manifest.json`` last, so
    the manifest lists (size, SHA-256) every file the implementations wrote.
    """
