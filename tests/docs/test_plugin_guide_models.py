"""The plugin guide's tables of the built-in models' submodules (and what they return) and of the sequence
helpers, checked against the models and the code (the outputs table: tests/docs/test_plugin_guide.py)."""

from __future__ import annotations

import re

import torch
from support import REPO

from compressor.core import sequences
from compressor.core.context import StageContext
from compressor.plugins import get_registry

GUIDE = (REPO / "docs" / "tutorials" / "write-a-plugin.md").read_text()
INFO = {"feature_dim": 80, "num_classes": 5, "tokens": list("abcd") + ["<blk>"], "vocab_size": 5}
ARGS = {"seq_classifier": {}, "rnnt_lstm": {"size": "tiny"}, "quartznet": {"size": "tiny"}, "slu_student": {}}


def _table(title: str) -> list[list[str]]:
    """The rows (cells) of the markdown table that follows ``title`` in the plugin guide."""
    text = GUIDE.split(title, 1)[1]
    rows = []
    for line in text.split("\n| ", 1)[1].splitlines():
        if not line.startswith("|") and rows:
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return [r for r in rows[2:] if r]  # past the header and its rule


def _rank(text: str) -> int:
    """Dimensions of the first shape ``(B, ...)`` in ``text``."""
    shape = re.search(r"\((B[^()]*)\)", text)
    assert shape, text
    return len([d for d in shape.group(1).split(",") if d.strip()])


def _run(name: str, modules: list[str]) -> tuple[dict, dict]:
    entry = get_registry().get("model", name)
    model = entry.factory(entry.args.model_validate(ARGS[name]), info=INFO).eval()
    batch = {"features": torch.randn(2, 40, 80), "feature_lengths": torch.tensor([40, 30]),
             "tokens": torch.tensor([[0, 1, 2], [1, 2, 0]]), "token_lengths": torch.tensor([3, 2])}
    return sequences.probe(model, batch, modules)


def test_submodule_table_matches_the_models() -> None:
    rows = _table("**What the built-in models contain**")
    assert {r[0].strip("`") for r in rows} == set(ARGS)
    for model_cell, module_cell, returns in rows:
        name, module = model_cell.strip("`"), module_cell.strip("`").replace(".N", ".0")
        _, captured = _run(name, [module])  # a name the model lacks fails here
        got = captured[module]
        tuple_cell = returns.split(":", 1)[-1] if returns.startswith(("LSTM", "called")) else returns
        tuple_cell = tuple_cell.split(" then ")[-1]  # a module called twice: the hook sees the last call
        if tuple_cell.lstrip().startswith("`("):
            assert isinstance(got, tuple), (name, module)
            got = got[0]
        assert isinstance(got, torch.Tensor) and got.dim() == _rank(tuple_cell), (name, module, returns)


def test_helpers_table_names_what_exists() -> None:
    rows = _table("**Helpers for padded sequences**")
    assert len(rows) >= 7
    for cell, _ in rows:
        call = cell.strip("`").split("(")[0]
        if call.startswith("ctx."):
            assert callable(getattr(StageContext, call[4:])), call
        else:
            assert callable(getattr(sequences, call)), call
