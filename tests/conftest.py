"""Fixtures every test folder shares, single-threaded torch, and the ``integration`` marker.

``python -m pytest -m "not integration"`` runs the fast unit tests only; ``python -m pytest`` runs everything.
Which tests are ``integration``: ``support.markers`` (tests/support/markers.py). Helpers: the ``support`` package.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from support import SPECS, save_tiny_bert
from support.markers import is_integration

torch.set_num_threads(1)


@pytest.fixture
def tiny_spec(tmp_path: Path) -> dict:
    """The tiny KD spec as a dict, writing its runs under tmp_path."""
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    return spec


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT text teacher saved once per session (``support.save_tiny_bert``)."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and is_integration(item):
            item.add_marker(pytest.mark.integration)
