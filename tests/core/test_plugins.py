"""Plugin discovery, the plugins listing, and errors inside hooks naming plugin and hook."""

from __future__ import annotations

import json
from pathlib import Path

from support import run_cli

from compressor import Strategy, hookimpl
from compressor.core.errors import PluginError
from compressor.plugins import Plugins, get_plugins, stage_strategies


def test_builtins_load_through_the_entry_point_group() -> None:
    plugins = get_plugins()
    names = {p.name for p in plugins.loaded}
    assert {"core", "logit_kd"} <= names
    for p in plugins.loaded:  # every built-in is discovered like a third-party plugin: by entry point
        assert p.package == "compressor"
    reg = plugins.registry
    assert reg.has("strategy", "logit_kd") and reg.has("schedule", "log_curriculum")
    assert reg.has("task", "classification") and reg.has("model", "seq_classifier")


def test_plugins_cli_lists_packages_hooks_and_schemas() -> None:
    done = run_cli("plugins", "--json")
    assert done.returncode == 0, done.stderr
    listing = {p["plugin"]: p for p in json.loads(done.stdout)}
    kd = listing["logit_kd"]
    assert kd["package"] == "compressor" and "compressor_register" in kd["hooks"]
    (strategy,) = [c for c in kd["components"] if c["kind"] == "strategy"]
    assert "compressor_loss_terms" in strategy["hooks"]
    args = {a["name"]: a for a in strategy["args"]}
    assert args["loss"]["default"] == "kl" and "temperature" in args
    text = run_cli("plugins")
    assert "  strategies:\n    logit_kd: " in text.stdout and "temperature" in text.stdout


class Exploding(Strategy):
    name = "exploding"

    @hookimpl
    def compressor_step_start(self, ctx) -> None:
        raise RuntimeError("boom")


def test_exception_in_a_hook_names_plugin_and_hook() -> None:
    plugins = Plugins()
    with stage_strategies(plugins, [("exploding", Exploding(None))]):
        try:
            plugins.call("compressor_step_start", ctx=None)
        except PluginError as e:
            assert e.plugin == "exploding" and e.hook == "compressor_step_start"
            assert "plugin 'exploding' failed in hook 'compressor_step_start': RuntimeError: boom" in str(e)
        else:
            raise AssertionError("no PluginError")
    assert plugins.pm.get_plugin("exploding#0") is None  # unregistered after the stage


def test_plugin_failure_in_a_run_exits_nonzero_with_one_line(tmp_path: Path, tiny_spec: dict) -> None:
    # KD between outputs of different widths (the teacher's and student's hidden vectors): the plugin fails
    # inside its hook
    tiny_spec["stages"][1]["plugins"][0]["logits_key"] = "hidden"
    from support import write_spec

    spec = write_spec(tmp_path / "s.yaml", tiny_spec)
    done = run_cli("run", str(spec))
    assert done.returncode == 1
    assert "plugin 'logit_kd' failed in hook 'compressor_loss_terms'" in done.stderr
    assert "Traceback" not in done.stderr


def test_unexpected_error_is_one_line(tmp_path: Path, tiny_spec: dict) -> None:
    from support import write_spec

    tiny_spec["teacher"]["num_classes"] = 3  # labels go up to 3: the task loss itself fails
    tiny_spec["student"]["num_classes"] = 3
    spec = write_spec(tmp_path / "s.yaml", tiny_spec)
    done = run_cli("run", str(spec))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "IndexError" in done.stderr and "COMPRESSOR_TRACEBACK=1" in done.stderr
