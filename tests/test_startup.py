"""Start-up: ``validate`` and ``plugins`` load what they use and nothing else (a regression guard without timing:
the wall times, measured side by side, are in benchmarks/results/cli_startup.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

#: modules no listing or validation needs: the compiler stack, plotting, export runtimes, text teachers
HEAVY = ("torch._dynamo", "torch._inductor", "sympy", "matplotlib", "transformers", "sherpa_onnx", "sentencepiece",
         "tensorboard", "onnx", "onnxruntime", "onnxscript")


@pytest.mark.parametrize("argv", [["plugins"], ["plugins", "--json"],
                                  ["validate", str(REPO / "specs" / "rnnt_lcmr.yaml")],
                                  ["validate", str(REPO / "specs" / "quickstart.yaml")]])
def test_no_heavy_imports(argv: list[str]) -> None:
    code = (f"import sys, json; from compressor.cli import main; rc = main({argv!r}); "
            f"print(json.dumps([rc, sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
            f"or m in {HEAVY!r})]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    rc, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert rc == 0, done.stderr
    assert loaded == [], f"{' '.join(argv)} imported {loaded[:8]}"
