"""The start-up check: packages that do not load together get one line naming them and the fix, exit 2."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from compressor.core.envcheck import FIX_PAIR, TORCH_PAIR, check_torch_pair, diagnose
from compressor.core.errors import PluginError
from compressor.plugins import Plugins

UNDEFINED = ("/venv/lib/python3.11/site-packages/torchaudio/lib/libtorchaudio.so: undefined symbol: "
             "torch_exception_get_what_without_backtrace")


def _clashing_import(name: str) -> object:
    # torch's loader raises this, with the dynamic loader's own error as its cause
    try:
        raise OSError(UNDEFINED)
    except OSError as cause:
        raise OSError("Could not load this library: /venv/.../torchaudio/lib/libtorchaudio.so") from cause


def _versions(name: str) -> str:
    return {"torch": "2.11.0", "torchaudio": "2.11.1"}[name]


def test_simulated_clash_names_packages_versions_and_fix() -> None:
    clash = check_torch_pair(import_module=_clashing_import, version=_versions)
    assert clash is not None and clash.exit_code == 2
    msg = str(clash)
    assert "\n" not in msg
    assert msg.startswith("torchaudio 2.11.1 does not load with torch 2.11.0")
    assert "undefined symbol torch_exception_get_what_without_backtrace" in msg
    assert msg.endswith(FIX_PAIR) and 'pip install "torch==2.11.0" "torchaudio==2.11.0"' in msg


def test_a_working_pair_is_no_clash() -> None:
    assert check_torch_pair() is None  # this environment imports torchaudio
    assert diagnose(RuntimeError("a bug")) is None


def test_missing_dependency_of_a_plugin_says_what_to_install() -> None:
    err = ModuleNotFoundError("No module named 'definitely_missing_pkg'", name="definitely_missing_pkg")
    clash = diagnose(err, where="plugin 'x' (x_mod)")
    assert clash is not None
    assert str(clash) == ("plugin 'x' (x_mod): needs the module 'definitely_missing_pkg', which is not installed; "
                          "install it: python -m pip install definitely_missing_pkg")


def test_pins_are_the_tested_pair() -> None:
    text = (REPO / "pyproject.toml").read_text()
    for name, version in TORCH_PAIR.items():
        assert re.search(rf'"{name}=={re.escape(version)}"', text), f"{name} is not pinned to {version}"


def test_the_cli_reports_a_clash_in_one_line(tmp_path: Path) -> None:
    """A torchaudio whose library does not load (as torchaudio 2.11.1 next to torch 2.11.0 did)."""
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(f"raise OSError({'Could not load this library: ' + UNDEFINED!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    for argv in (["plugins"], ["validate", str(REPO / "specs" / "rnnt_lcmr.yaml")]):
        done = subprocess.run([sys.executable, "-m", "compressor", *argv], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"torchaudio {md.version('torchaudio')} does not load with torch {md.version('torch')}" in lines[0]
        assert "undefined symbol torch_exception_get_what_without_backtrace" in lines[0]
        assert FIX_PAIR in lines[0]


def _fake_entry_point(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str) -> Plugins:
    (tmp_path / "broken_plugin_mod.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("broken_plugin_mod", None)
    ep = md.EntryPoint(name="broken", value="broken_plugin_mod", group="compressor.plugins")
    monkeypatch.setattr("compressor.plugins.md.entry_points", lambda group: [ep])
    return Plugins()


def test_a_plugin_with_a_bug_is_a_plugin_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    plugins = _fake_entry_point(monkeypatch, tmp_path, "x = 1 / 0\n")
    with pytest.raises(PluginError) as info:
        plugins.load_entry_points()
    assert str(info.value) == ("plugin 'broken' (broken_plugin_mod) failed to import: ZeroDivisionError: "
                               "division by zero")


def test_a_plugin_missing_a_dependency_is_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    plugins = _fake_entry_point(monkeypatch, tmp_path, "import definitely_missing_pkg\n")
    with pytest.raises(Exception) as info:
        plugins.load_entry_points()
    assert getattr(info.value, "exit_code", None) == 2
    assert "plugin 'broken' (broken_plugin_mod): needs the module 'definitely_missing_pkg'" in str(info.value)
