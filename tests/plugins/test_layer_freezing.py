"""layer_freezing: frozen layers are bit-for-bit unchanged after a stage while the others move; frozen batch
norms keep their statistics; gradual unfreezing thaws from the output side; names checked at validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from support import SPECS, write_spec

from compressor.core.checkpoint import load_state_dict_file
from compressor.core.errors import SpecError
from compressor.plugins import get_plugins
from compressor.run.components import build_data, build_models
from compressor.run.engine import run_spec
from compressor.spec import load_spec


def tiny_ctc(tmp_path: Path, **stage: object) -> dict:
    spec = yaml.safe_load((SPECS / "tiny_ctc.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    spec["stages"][0].update(stage)
    return spec


def initial_student(run_dir: Path) -> dict[str, torch.Tensor]:
    """The student exactly as the run built it (models are seeded), before any training."""
    plugins = get_plugins()
    loaded = load_spec(run_dir / "resolved_spec.yaml", registry=plugins.registry)
    models = build_models(loaded, plugins, build_data(loaded, plugins))
    return {k: v.clone() for k, v in models["student"].state_dict().items()}


def steps(run_dir: Path) -> list[dict]:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "type" not in r]


def test_frozen_blocks_are_bit_identical_and_the_rest_moves(tmp_path: Path) -> None:
    spec = tiny_ctc(tmp_path, steps=4, plugins=[{"name": "layer_freezing", "first_blocks": 3,
                                                 "modules": ["decoder"]}])
    run_dir = run_spec(write_spec(tmp_path / "spec.yaml", spec))
    before, after = initial_student(run_dir), load_state_dict_file(run_dir / "final" / "student.pt")
    frozen = [k for k in before if k.startswith(("encoder.layers.0.", "encoder.layers.1.", "encoder.layers.2.",
                                                 "decoder."))]
    assert any("running_mean" in k for k in frozen) and any("weight" in k for k in frozen)
    for k in frozen:  # weights (despite weight decay) and batch-norm statistics (despite two evaluations)
        assert torch.equal(before[k], after[k]), k
    moved = [k for k in before if k.startswith("encoder.layers.4.") and not torch.equal(before[k], after[k])]
    assert any(k.endswith("pointwise.weight") for k in moved) and any("running_mean" in k for k in moved)
    records = steps(run_dir)
    total = sum(v.numel() for k, v in before.items() if not any(b in k for b in ("running", "num_batches", "cmvn")))
    frozen_params = sum(before[k].numel() for k in frozen if "running" not in k and "num_batches" not in k)
    assert [r["trainable_parameters"] for r in records] == [total - frozen_params] * 4
    assert [r["frozen_groups"] for r in records] == [4] * 4


def test_gradual_unfreezing_thaws_from_the_output_side(tmp_path: Path) -> None:
    spec = tiny_ctc(tmp_path, steps=6, plugins=[{"name": "layer_freezing", "first_blocks": 3,
                                                 "frozen_fraction": {"name": "linear", "start": 1.0, "end": 0.0}}])
    run_dir = run_spec(write_spec(tmp_path / "spec.yaml", spec))
    records = steps(run_dir)
    assert [r["frozen_groups"] for r in records] == [3, 3, 2, 2, 1, 0]  # ceil(f_t * 3), f_t = 1 - t / 5
    counts = [r["trainable_parameters"] for r in records]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    before, after = initial_student(run_dir), load_state_dict_file(run_dir / "final" / "student.pt")
    # block 2 thawed at step 2, block 0 only at the last step: all have moved by the end
    for block in (0, 2):
        key = f"encoder.layers.{block}.units.0.pointwise.weight"
        assert not torch.equal(before[key], after[key]), key


@pytest.mark.parametrize("plugin, message", [
    ({"modules": ["encoder.layer.0"]}, "pattern 'encoder.layer.0' matches no module.*did you mean 'encoder.layers.0'"),
    ({"first_blocks": 99}, "first_blocks is 99 but 'encoder.layers' has 8 blocks"),
    ({"first_blocks": 1, "blocks": "encoder.layer"}, "no module 'encoder.layer'.*did you mean 'encoder.layers'"),
    ({"modules": ["*"]}, "freeze every parameter"),
    ({"first_blocks": 1, "model": "teacher"}, "no model named 'teacher'"),
    ({}, "give 'modules'"),
    ({"first_blocks": 1, "frozen_fraction": {"name": "linaer"}}, "unknown schedule 'linaer'; did you mean 'linear'"),
    ({"first_blocks": 1, "frozen_fraction": {"start": 1.0, "end": 0.0}}, "frozen_fraction.name"),
    ({"first_blocks": 1, "frozen_fraction": {"name": "linear", "end": "x"}}, "schedule 'linear': end"),
])
def test_bad_names_are_refused_at_validation(tmp_path: Path, plugin: dict, message: str) -> None:
    spec = tiny_ctc(tmp_path, plugins=[{"name": "layer_freezing", **plugin}])
    with pytest.raises(SpecError, match=message) as err:
        load_spec(write_spec(tmp_path / "spec.yaml", spec))
    assert "stages[0].plugins[0]" in str(err.value)


@pytest.mark.parametrize("mode", ["eval", "batch_norm_eval"])
def test_frozen_groups_stay_in_eval_mode_through_evaluations(mode: str) -> None:
    from support.plugin_ctx import build_strategy, feature_data, make_ctx

    from compressor.families.ctc.quartznet import QuartzNetArgs, build_quartznet

    torch.manual_seed(0)
    model = build_quartznet(QuartzNetArgs(size="tiny", feature_dim=8, vocab_size=6, dropout=0.2))
    ctx = make_ctx({"student": model}, feature_data([20, 30], dim=8))
    freeze = build_strategy("layer_freezing", first_blocks=2, frozen_mode=mode)
    freeze.compressor_prepare_models(ctx)
    model.eval()  # what an evaluation does, then back to training
    model.train()
    freeze.compressor_step_start(ctx)
    frozen, free = model.encoder.layers[0], model.encoder.layers[-1]
    norms = [m for m in frozen.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    dropouts = [m for m in frozen.modules() if isinstance(m, torch.nn.Dropout)]
    assert norms and dropouts
    assert not any(m.training for m in norms) and free.training and model.training
    assert all(m.training == (mode == "batch_norm_eval") for m in dropouts)  # dropout off only in eval mode
    freeze.compressor_finalize_student(ctx)
    assert all(m.training for m in frozen.modules())  # released at the end of the stage
