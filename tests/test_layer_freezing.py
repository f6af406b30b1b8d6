"""layer_freezing: frozen modules unchanged bit for bit (batch-norm statistics included) while the rest moves;
names checked at validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compressor.asr.ctc import ConvCTCArgs, build_conv_ctc
from compressor.errors import SpecError
from compressor.spec import load_spec
from tests.conftest import write_spec
from tests.plugin_ctx import build_strategy, feature_data, make_ctx


def test_frozen_modules_stay_bit_identical_and_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = build_conv_ctc(ConvCTCArgs(size="tiny", feature_dim=8, vocab_size=6, dropout=0.2))
    ctx = make_ctx({"student": model}, feature_data([20, 30], dim=8))
    model.train()
    freeze = build_strategy("layer_freezing", modules=["prolog", "blocks.*"])
    freeze.compressor_prepare_models(ctx)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        model.eval()  # what an evaluation does, then back to training
        model.train()
        out = model({"features": torch.randn(4, 30, 8), "feature_lengths": torch.tensor([30, 25, 20, 30])})
        out["log_probs"].sum().backward()
        opt.step()
        opt.zero_grad()
    ctx.scalars = {}
    freeze.compressor_step_start(ctx)
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("prolog.", "blocks."))]
    moved = [k for k in before if k.startswith(("epilog", "head")) and before[k].is_floating_point()]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # running stats too
    assert any(not torch.equal(before[k], after[k]) for k in moved)
    assert not model.prolog.training and not model.blocks[0].units[0].norm.training and model.epilog.training
    trainable = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("prolog", "blocks")))
    assert ctx.scalars["trainable_parameters"] == trainable
    freeze.compressor_finalize_student(ctx)
    model.train()
    assert model.prolog.training  # released at the end of the stage


def test_freezing_validation(tmp_path: Path, tiny_spec: dict) -> None:
    tiny_spec["stages"][1]["plugins"] = [{"name": "layer_freezing", "modules": ["encodr"]}]
    with pytest.raises(SpecError, match=r"modules\[0\]: 'encodr' matches no module of 'student'; did you mean "
                                        r"'encoder'\?"):
        load_spec(write_spec(tmp_path / "a.yaml", tiny_spec))
    tiny_spec["stages"][1]["plugins"] = [{"name": "layer_freezing", "model": "teacher", "modules": ["encoder"]}]
    with pytest.raises(SpecError, match="'teacher' is not trained in this stage: there is nothing to freeze"):
        load_spec(write_spec(tmp_path / "b.yaml", tiny_spec))
