"""The shared forward-hook manager: capture and replace outputs of named submodules, remove every hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compressor.core.forward_hooks import ForwardHooks


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.LSTM(3, 5, batch_first=True))


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_capture_keeps_raw_outputs_and_the_context_removes_the_hooks() -> None:
    net, x = _net(), torch.randn(2, 6, 4)
    with ForwardHooks(net) as hooks:
        captured = hooks.capture(["0", "2"])
        assert _hook_count(net) == 2
        out = net(x)
    assert _hook_count(net) == 0
    assert torch.equal(captured["0"], net[0](x))
    assert isinstance(captured["2"], tuple) and torch.equal(captured["2"][0], out[0])  # an LSTM's (output, state)


def test_hooks_are_removed_when_the_forward_fails() -> None:
    net = _net()
    with pytest.raises(RuntimeError), ForwardHooks(net) as hooks:
        hooks.capture(["1"])
        net(torch.randn(2, 6, 7))  # wrong width
    assert _hook_count(net) == 0


def test_capture_only_when_asked_and_clear() -> None:
    net, x = _net(), torch.randn(1, 2, 4)
    training = {"on": False}
    hooks = ForwardHooks(net)
    captured = hooks.capture(["1"], when=lambda: training["on"])
    net(x)
    assert captured == {}
    training["on"] = True
    net(x)
    assert set(captured) == {"1"}
    hooks.clear()
    assert captured == {} and hooks.captured is captured
    hooks.remove()
    hooks.remove()  # idempotent
    assert _hook_count(net) == 0


def test_replace_passes_the_new_output_on() -> None:
    net, x = _net(), torch.randn(2, 6, 4)
    with ForwardHooks(net) as hooks:
        hooks.replace("1", lambda _m, out: torch.zeros_like(out))
        out, _ = net(x)
    with ForwardHooks(net) as hooks:
        hooks.replace("1", lambda _m, out: None)  # None: the output stays
        same, _ = net(x)
    zeros = net[2](torch.zeros(2, 6, 3))[0]
    assert torch.allclose(out, zeros) and not torch.allclose(same, zeros)


def test_an_unknown_module_is_a_key_error() -> None:
    net = _net()
    with pytest.raises(KeyError, match="no module 'encoder'"), ForwardHooks(net) as hooks:
        hooks.capture(["encoder"])
    with pytest.raises(KeyError):
        ForwardHooks(net).module("")
    assert ForwardHooks(net).module("2") is net[2]
