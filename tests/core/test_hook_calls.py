"""Hooks are called through pluggy: order, wrappers, firstresult, tracing, and failures that name the plugin."""

from __future__ import annotations

import json
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from torch import nn

import compressor.export.plugin as export_plugin
from compressor.core.errors import PluginError, UserError
from compressor.core.hookspecs import hookimpl, hookspec
from compressor.export.base import ExportJob
from compressor.plugins import Plugins, stage_strategies


class Recorder:
    """A third-party-style plugin whose ``compressor_step_start`` notes its name in ``ctx``."""

    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    def compressor_step_start(self, ctx: list) -> None:
        ctx.append(self.name)


class First(Recorder):
    @hookimpl(tryfirst=True)
    def compressor_step_start(self, ctx: list) -> None:
        ctx.append(self.name)


class Last(Recorder):
    @hookimpl(trylast=True)
    def compressor_step_start(self, ctx: list) -> None:
        ctx.append(self.name)


def test_call_order_is_pluggys_most_recent_first_with_tryfirst_and_trylast() -> None:
    plugins = Plugins()
    for plugin in (Last("last"), Recorder("a"), First("first"), Recorder("b")):
        plugins.add(plugin.name, plugin)
    seen: list[str] = []
    plugins.call("compressor_step_start", ctx=seen)
    assert seen == ["first", "b", "a", "last"]


class ExtraFiles:
    @hookimpl
    def compressor_export(self, ctx: ExportJob, out_dir: Path) -> list[Path]:
        path = out_dir / f"{ctx.model_name}.extra.txt"
        path.write_text("hello", encoding="utf-8")
        return [path]


class WatchExport:
    """A hook wrapper: sees the call's arguments before, and every implementation's result after."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    @hookimpl(wrapper=True)
    def compressor_export(self, ctx: ExportJob, out_dir: Path) -> Generator[None, list[Path], list[Path]]:
        self.seen["before"] = (ctx.model_name, sorted(p.name for p in out_dir.iterdir()))
        result = yield
        self.seen["result"] = list(result)
        return result


def _job(out: Path) -> ExportJob:
    return ExportJob(model=nn.Linear(2, 2), model_name="student", model_ref={"name": "tiny"}, task=None,
                     data=None, out_dir=out, run_dir=None, teacher=None, args=None, exporter="onnx")


def test_a_hook_wrapper_sees_the_call_and_the_result_and_the_manifest_comes_last(tmp_path: Path) -> None:
    plugins = Plugins()
    plugins.add("export", export_plugin)  # the built-in plugin: writes the manifest around the hook
    plugins.add("extra", ExtraFiles())
    watch = WatchExport()
    plugins.add("watch", watch)
    monitored: list[tuple[str, int]] = []
    undo = plugins.pm.add_hookcall_monitoring(lambda name, impls, kwargs: monitored.append((name, len(impls))),
                                              lambda outcome, name, impls, kwargs: None)
    job = _job(tmp_path)
    try:
        out = plugins.call("compressor_export", ctx=job, model=job.model, out_dir=tmp_path)
    finally:
        undo()
    written = [tmp_path / "student.extra.txt"]
    assert out == [written]
    assert watch.seen == {"before": ("student", []), "result": [written]}
    assert monitored == [("compressor_export", 3)]
    manifest = json.loads((tmp_path / "export_manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["student.extra.txt"]
    assert (manifest["model"], manifest["exporter"]) == ("student", "onnx")


class PickSpecs:
    """A hook a third-party package declares, answered by the first implementation with an answer."""

    @hookspec(firstresult=True)
    def compressor_pick(self, ctx: Any) -> str | None:
        """The first non-None answer wins."""


class Answer:
    def __init__(self, answer: str | None, calls: list[str]) -> None:
        self.answer, self.calls = answer, calls

    @hookimpl
    def compressor_pick(self, ctx: Any) -> str | None:
        self.calls.append(str(self.answer))
        return self.answer


def test_firstresult_stops_at_the_first_answer() -> None:
    plugins = Plugins()
    plugins.pm.add_hookspecs(PickSpecs)
    calls: list[str] = []
    for name, answer in (("a", "from a"), ("b", "from b"), ("c", None)):
        plugins.add(name, Answer(answer, calls))
    assert plugins.call("compressor_pick", ctx=None) == ["from b"]
    assert calls == ["None", "from b"]  # c (no answer), then b answers; a is never called
    assert plugins.call("compressor_step_start", ctx=[]) == []  # a collecting hook with no result


class Boom:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    @hookimpl
    def compressor_step_start(self, ctx: Any) -> None:
        raise self.error


class FailingWrapper:
    @hookimpl(wrapper=True)
    def compressor_step_start(self, ctx: Any) -> Generator[None, None, None]:
        yield
        sys.exit(3)


class PassingWrapper:
    @hookimpl(hookwrapper=True)
    def compressor_step_start(self, ctx: Any) -> Generator[None, Any, None]:
        yield


def test_the_failing_implementation_is_named_through_wrappers() -> None:
    plugins = Plugins()
    plugins.add("first", Recorder("first"))
    plugins.add("boom", Boom(RuntimeError("kaput")))
    plugins.add("old_style", PassingWrapper())
    plugins.add("last", Recorder("last"))
    with pytest.raises(PluginError) as caught:
        plugins.call("compressor_step_start", ctx=[])
    assert (caught.value.plugin, caught.value.hook) == ("boom", "compressor_step_start")
    assert "kaput" in str(caught.value)

    exits = Plugins()
    exits.add("quiet", Recorder("quiet"))
    exits.add("leaver", FailingWrapper())
    with pytest.raises(PluginError) as caught:
        exits.call("compressor_step_start", ctx=[])
    assert caught.value.plugin == "leaver" and "sys.exit(3)" in str(caught.value)


def test_a_user_error_from_a_strategy_instance_names_its_plugin() -> None:
    plugins = Plugins()
    plugins.add("fine", Recorder("fine"))
    with stage_strategies(plugins, [("ok", Recorder("ok")), ("picky", Boom(UserError("bad value")))]):
        with pytest.raises(UserError, match=r"^plugin 'picky': bad value$"):
            plugins.call("compressor_step_start", ctx=[])
    # registered for the stage only
    assert [p for p in ("ok#0", "picky#1") if plugins.pm.get_plugin(p) is not None] == []


def test_every_hookspec_has_a_built_in_implementation() -> None:
    import compressor.core.hookspecs as hs
    from compressor.reporting.catalog import catalog

    specs = {n for n in dir(hs) if n.startswith("compressor_") and hasattr(getattr(hs, n), "compressor_spec")}
    built_in = [p for p in catalog() if p["module"].split(".")[0] in ("compressor", "plugins")]
    implemented = {h for p in built_in for h in p["hooks"]}
    implemented |= {h for p in built_in for c in p["components"] for h in c.get("hooks", [])}
    assert specs and specs <= implemented, sorted(specs - implemented)


class Outdated:
    @hookimpl
    def compressor_step_end(self, ctx: Any) -> None:  # no longer a hook: it would never be called
        pass


def test_an_implementation_of_an_unknown_hook_is_refused_naming_plugin_and_hook() -> None:
    plugins = Plugins()
    with pytest.raises(PluginError, match=r"^plugin 'old' implements an unknown hook 'compressor_step_end'"):
        plugins.add("old", Outdated())
    with pytest.raises(PluginError, match=r"^plugin 'stale' implements an unknown hook 'compressor_step_end'"):
        with stage_strategies(plugins, [("stale", Outdated())]):
            pass
    assert plugins.pm.get_plugin("stale#0") is None and plugins.pm.get_plugin("old") is None
