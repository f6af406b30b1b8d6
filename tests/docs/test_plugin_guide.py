"""The plugin guide (docs/tutorials/write-a-plugin.md), as a user follows it: its example package copied verbatim
from the guide, installed with pip and trained with; the public API it documents (ScheduleArg, check helpers, model
output keys, ctx.progress)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from support import REPO, SPECS, run_cli, write_spec


def _guide() -> str:
    return (REPO / "docs" / "tutorials" / "write-a-plugin.md").read_text(encoding="utf-8")


def _block(guide: str, lang: str, first_line: str) -> str:
    """The fenced ``lang`` block of the guide whose first line is ``first_line``, dedented."""
    for match in re.finditer(rf"( *)```{lang}\n(.*?)\n\1```", guide, re.S):
        indent, body = match.group(1), match.group(2)
        lines = [line[len(indent):] if line.startswith(indent) else line for line in body.split("\n")]
        if lines[0].strip() == first_line:
            return "\n".join(lines) + "\n"
    raise AssertionError(f"no ```{lang} block starting with {first_line!r} in the plugin guide")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The guide's example package, installed with pip into its own directory."""
    guide = _guide()
    root = tmp_path_factory.mktemp("guide")
    pkg = root / "my-kd"
    (pkg / "my_kd").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(_block(guide, "toml", "# pyproject.toml"))
    (pkg / "my_kd" / "__init__.py").write_text(_block(guide, "python", "# my_kd/__init__.py"))
    site = root / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                           str(pkg)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return {"PYTHONPATH": str(site)}


def _spec(tmp_path: Path, plugins: list[dict]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    spec["stages"][1]["plugins"] = plugins
    spec["stages"][1].pop("grad_accum")
    return write_spec(tmp_path / "spec.yaml", spec)


def test_readme_plugin_example_installs_and_trains(installed, tmp_path):
    listing = run_cli("plugins", "--json", env=installed)
    assert listing.returncode == 0, listing.stderr
    plugins = {p["plugin"]: p for p in json.loads(listing.stdout)}
    assert plugins["cosine_kd"]["package"] == "my-kd"

    snippet = yaml.safe_load(_block(_guide(), "yaml", "plugins:"))["plugins"]
    run = run_cli("run", str(_spec(tmp_path, snippet)), env=installed)
    assert run.returncode == 0, run.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").glob("*/*")
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss/cosine_kd" in r]
    assert len(steps) >= 4
    weights = [r["weight/cosine_kd"] for r in steps]
    assert weights[0] == pytest.approx(1.0) and weights[-1] == pytest.approx(0.2)  # the linear schedule
    assert all(a > b for a, b in zip(weights, weights[1:]))
    progress = [r["cosine_kd_progress"] for r in steps]
    assert progress[0] == 0.0 and progress[-1] == 1.0  # like the schedules: first step 0, last step 1


def test_plugin_errors_are_one_clear_line(installed, tmp_path):
    proc = run_cli("validate", str(_spec(tmp_path, [{"name": "cosine_kd", "teacher": "professor"}])), env=installed)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "plugin 'cosine_kd' needs a model named 'professor'" in proc.stderr
    assert "stages[1].plugins[0]" in proc.stderr

    # the schedule argument's errors, validated in one process (each a SpecError at the key path)
    cases = {"typo": {"name": "lienar"}, "bad_arg": {"name": "linear", "strat": 1}, "number": 0.3}
    paths = {k: str(_spec(tmp_path / k, [{"name": "cosine_kd", "weight": w}])) for k, w in cases.items()}
    script = ("import json, sys\nfrom compressor.spec import load_spec\nfrom compressor.plugins import get_registry\n"
              "out = {}\nfor k, p in json.loads(sys.argv[1]).items():\n    try:\n"
              "        load_spec(p, registry=get_registry()); out[k] = 'ok'\n"
              "    except Exception as e:\n        out[k] = type(e).__name__ + ': ' + str(e)\nprint(json.dumps(out))\n")
    env = {**__import__("os").environ, **installed}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(paths)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["typo"].startswith("SpecError") and "unknown schedule 'lienar'; did you mean 'linear'?" in got["typo"]
    assert "stages[1].plugins[0].weight" in got["typo"]
    assert "schedule 'linear': strat" in got["bad_arg"]
    assert got["number"] == "ok"  # a number is a constant schedule


def test_schedule_arg():
    from compressor import ScheduleArg

    class Clock:
        epoch, total_epochs, steps_per_epoch, batch_error = 0, 1, 5, None

        def __init__(self, step: int) -> None:
            self.step, self.total_steps = step, 5

    linear = ScheduleArg(name="linear", start=0.0, end=1.0)
    assert [linear(Clock(s)) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert linear.final_value(5) == 1.0 and linear.arguments == {"start": 0.0, "end": 1.0}
    assert ScheduleArg.model_validate(0.4)(Clock(2)) == 0.4
    with pytest.raises(ValueError, match="did you mean 'linear'"):
        ScheduleArg(name="linearr")


def test_progress_reaches_one_at_the_last_step():
    from compressor.core.context import StageContext

    ctx = StageContext.__new__(StageContext)
    ctx.total_steps = 5
    values = []
    for step in range(5):
        ctx.step = step
        values.append(ctx.progress)
    assert values == [0.0, 0.25, 0.5, 0.75, 1.0]
    ctx.total_steps, ctx.step = 1, 0
    assert ctx.progress == 1.0


def _documented_keys() -> dict[str, dict[str, int]]:
    """Output key -> number of dimensions, per model, from the guide's table of what the models return."""
    table = _guide().split("**What the built-in models return.**", 1)[1].split("\n\n**", 1)[0]
    rows = {}
    for line in table.splitlines():
        m = re.match(r"\| `(\w+)` \| `\w+` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = {key: len([d for d in shape.split(",") if d.strip()]) if shape.startswith("B")
                                else -1 for key, shape in re.findall(r"`(\w+)` \(([^()]*)\)", m.group(2))}
    return rows


def test_documented_output_keys_are_what_the_models_return():
    from compressor.plugins import get_registry

    documented = _documented_keys()
    registry = get_registry()
    assert {"seq_classifier", "rnnt_lstm", "quartznet"} <= set(documented)
    tokens = list("abcde") + ["<blk>"]
    info = {"feature_dim": 80, "vocab_size": len(tokens), "tokens": tokens, "blank_id": len(tokens) - 1,
            "num_classes": 3}
    batch = {"features": torch.randn(2, 30, 80), "feature_lengths": torch.tensor([30, 24]),
             "tokens": torch.tensor([[0, 1, 2], [3, 4, 0]]), "token_lengths": torch.tensor([3, 2])}
    for name, keys in documented.items():
        if not registry.has("model", name):
            continue
        entry = registry.get("model", name)
        size = {"size": "tiny"} if "size" in entry.args.model_fields else {}
        model = entry.factory(entry.args.model_validate(size), info=info).eval()
        with torch.no_grad():
            out = model(batch)
        assert set(out) == set(keys), name
        for key, dims in keys.items():
            assert dims == -1 or out[key].dim() == dims, (name, key, tuple(out[key].shape))
