"""Start-up: ``validate`` and ``plugins`` load what they use and nothing else (a regression guard without timing:
the wall times, measured side by side, are in benchmarks/speed/results/cli_speed_startup.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import REPO
from support.tiny_teacher import headline_overrides, ship_tiny_teacher

#: modules no listing or validation needs: the compiler stack, plotting, export runtimes, text teachers
HEAVY = ("torch._dynamo", "torch._inductor", "sympy", "matplotlib", "transformers", "sherpa_onnx", "sentencepiece",
         "tensorboard", "onnx", "onnxruntime", "onnxscript")


@pytest.fixture(scope="module")
def headline_teacher(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``--set`` items giving the headline a tiny shipped teacher (validation reads its model.json)."""
    teacher = ship_tiny_teacher(tmp_path_factory.mktemp("tiny_teacher"))
    return [x for o in headline_overrides(teacher) for x in ("--set", o)]


@pytest.mark.parametrize("argv", [["plugins"], ["plugins", "--json"],
                                  ["validate", str(REPO / "specs" / "rnnt_lcmr.yaml"), "HEADLINE_TEACHER"],
                                  ["validate", str(REPO / "specs" / "quickstart.yaml")]])
def test_no_heavy_imports(argv: list[str], request: pytest.FixtureRequest) -> None:
    if "HEADLINE_TEACHER" in argv:
        argv = [*argv[:-1], *request.getfixturevalue("headline_teacher")]
    code = (f"import sys, json; from compressor.cli import main; rc = main({argv!r}); "
            f"print(json.dumps([rc, sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
            f"or m in {HEAVY!r})]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    rc, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert rc == 0, done.stderr
    assert loaded == [], f"{' '.join(argv)} imported {loaded[:8]}"


def test_a_lazy_factory_loads_on_first_use(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from compressor.core.errors import PluginError
    from compressor.core.registry import LazyFactory, NoArgs, Registry

    (tmp_path / "lazy_component_mod.py").write_text("LOADED = True\n\ndef build(args):\n    return 'built'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("lazy_component_mod", None)
    registry = Registry()
    registry.current_package = "pkg (p)"
    entry = registry.add("model", "lazy", "lazy_component_mod:build", args=NoArgs, doc="a lazy model")
    assert isinstance(entry.factory, LazyFactory) and "lazy_component_mod" not in sys.modules
    assert entry.doc == "a lazy model" and entry.args is NoArgs
    assert entry.factory(NoArgs()) == "built" and "lazy_component_mod" in sys.modules

    broken = registry.add("model", "broken", "lazy_component_mod:missing_attribute")
    with pytest.raises(PluginError, match=r"model 'broken' \(pkg \(p\)\) \(lazy_component_mod:missing_attribute\) "
                                          r"failed to import: AttributeError"):
        broken.factory(NoArgs())
    absent = registry.add("model", "absent", "definitely_absent_module_xyz:build")
    with pytest.raises(Exception) as info:
        absent.factory(NoArgs())
    assert getattr(info.value, "exit_code", None) == 2  # a dependency that is not installed: the environment
    assert "needs the module 'definitely_absent_module_xyz'" in str(info.value)
    with pytest.raises(ValueError, match="module:attribute"):
        registry.add("model", "no_colon", "lazy_component_mod")
