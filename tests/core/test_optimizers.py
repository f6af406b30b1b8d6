"""Optimizers and LR schedules are registered components: named in a spec, validated, listed, extensible."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from support import write_spec

from compressor.core.errors import SpecError
from compressor.plugins import get_registry
from compressor.run.engine import run_spec
from compressor.spec import load_spec


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd", "novograd", "lamb"])
def test_every_builtin_optimizer_takes_a_step(name: str) -> None:
    reg = get_registry()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    before = copy.deepcopy(model.state_dict())
    args = reg.parse_args("optimizer", name, {"lr": 0.01, "weight_decay": 0.01})
    opt = reg.get("optimizer", name).factory(args, list(model.parameters()))
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()
    opt.step()
    assert not torch.equal(before["weight"], model.weight.detach())


def test_novograd_has_seed_003_defaults() -> None:
    args = get_registry().parse_args("optimizer", "novograd", {})
    assert args.betas == (0.95, 0.25)
    opt = get_registry().get("optimizer", "novograd").factory(args, [torch.nn.Parameter(torch.ones(2))])
    assert type(opt).__name__ == "NovoGrad" and opt.defaults["betas"] == (0.95, 0.25)


def _spec(tiny_spec: dict, tmp_path: Path, **stage: object) -> Path:
    spec = copy.deepcopy(tiny_spec)
    spec["stages"][0].update(stage)
    return write_spec(tmp_path / "s.yaml", spec)


def test_bad_optimizer_arguments_name_the_key_path(tmp_path: Path, tiny_spec: dict) -> None:
    with pytest.raises(SpecError, match=r"stages\[0\]\.optimizer: unknown optimizer 'lamd'; did you mean 'lamb'"):
        load_spec(_spec(tiny_spec, tmp_path, optimizer={"name": "lamd"}))
    with pytest.raises(SpecError, match=r"stages\[0\]\.optimizer\.betas: .*must be in \[0, 1\)"):
        load_spec(_spec(tiny_spec, tmp_path, optimizer={"name": "novograd", "betas": [0.95, 1.5]}))
    with pytest.raises(SpecError, match=r"stages\[0\]\.optimizer\.lr"):
        load_spec(_spec(tiny_spec, tmp_path, optimizer={"name": "lamb", "lr": float("inf")}))
    with pytest.raises(SpecError, match=r"stages\[0\]\.lr_schedule: unknown lr_schedule 'cosin'"):
        load_spec(_spec(tiny_spec, tmp_path, lr_schedule={"name": "cosin"}))
    with pytest.raises(SpecError, match=r"stages\[0\]\.lr_schedule\.warmup_fraction"):
        load_spec(_spec(tiny_spec, tmp_path, lr_schedule={"name": "cosine", "warmup_fraction": 1.5}))


def test_a_stage_trains_with_lamb_and_a_fractional_warmup(tmp_path: Path, tiny_spec: dict) -> None:
    spec = _spec(tiny_spec, tmp_path, optimizer={"name": "lamb", "lr": 0.01},
                 lr_schedule={"name": "cosine", "warmup_fraction": 0.5})
    run_dir = run_spec(spec)
    import json

    lrs = [json.loads(line)["lr"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
           if '"lr"' in line and '"stage_index": 0' in line]
    assert lrs[0] < lrs[len(lrs) // 2 - 1]  # warming up over the first half
    assert max(lrs) == pytest.approx(0.01)


def test_a_third_party_optimizer_is_used_by_name(tmp_path: Path, tiny_spec: dict) -> None:
    from compressor.plugins import get_plugins
    from compressor.run.optim import OptimizerArgs

    calls = []

    def build_plain_sgd(args: OptimizerArgs, params):  # no momentum
        calls.append(args.lr)
        return torch.optim.SGD(params, lr=args.lr)

    reg = get_plugins().registry
    if not reg.has("optimizer", "plain_sgd_test"):
        reg.add("optimizer", "plain_sgd_test", build_plain_sgd, args=OptimizerArgs)
    run_spec(_spec(tiny_spec, tmp_path, optimizer={"name": "plain_sgd_test", "lr": 0.05}))
    assert calls == [0.05]
