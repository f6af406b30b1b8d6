"""A plugin in its own pip package (examples/fitnets_hint) is discovered by entry point and runs in a spec."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from support import REPO, run_cli, write_spec


def test_pip_installed_plugin_runs_through_a_spec(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--target", str(site), str(REPO / "examples" / "fitnets_hint")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    env = {"PYTHONPATH": str(site)}

    listing = run_cli("plugins", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    plugins = {p["plugin"]: p for p in json.loads(listing.stdout)}
    assert plugins["fitnets_hint"]["package"] == "compressor-fitnets-hint"
    (strategy,) = plugins["fitnets_hint"]["components"]
    assert {"compressor_prepare_models", "compressor_loss_terms"} <= set(strategy["hooks"])

    spec = yaml.safe_load((REPO / "examples" / "fitnets_hint" / "spec.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    path = write_spec(tmp_path / "spec.yaml", spec)
    run = run_cli("run", str(path), env=env)
    assert run.returncode == 0, run.stderr
    (run_dir,) = (tmp_path / "runs").glob("*/*")
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    hint = [r["loss/hint"] for r in records if "loss/hint" in r]
    assert hint and hint[-1] < hint[0]  # the regressor and the student learn to match the hint
    assert all(r.get("weight/hint") == 0.5 for r in records if "loss/hint" in r)
    # the regressor was a training aid: the final student has only the student's weights
    assert "hint_regressor" not in {p.stem for p in (run_dir / "final").glob("*.pt")}

    bad = dict(spec)
    bad["stages"][1]["plugins"][1]["student_layer"] = "encodr"
    bad_path = write_spec(tmp_path / "bad.yaml", bad)
    refused = run_cli("validate", str(bad_path), env=env)
    assert refused.returncode == 2 and "did you mean 'encoder'" in refused.stderr

    without = run_cli("validate", str(path))  # not installed in this environment: a clear error
    assert without.returncode == 2 and "unknown strategy 'fitnets_hint'" in without.stderr
