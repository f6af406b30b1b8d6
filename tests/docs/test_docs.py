"""The documentation site builds with warnings as errors, and its reference pages come from the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

ROOT = REPO

pytest.importorskip("mkdocs", reason="the docs are built by the dev extra's mkdocs")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _text(html: Path) -> str:
    return re.sub(r"<[^>]+>", " ", html.read_text())


def test_spec_reference_lists_every_stage_key(site: Path) -> None:
    from compressor.spec import StageSpec

    text = _text(site / "reference" / "spec" / "index.html")
    for key in StageSpec.model_fields:
        assert f"{key}" in text, key
    assert "StageSpec" in text and "EvaluateSpec" in text and "BaselineSpec" in text


def test_components_reference_lists_every_registered_component(site: Path) -> None:
    from compressor.plugins import get_registry

    text = _text(site / "reference" / "components" / "index.html")
    names = [e.name for e in get_registry().entries()]
    assert len(names) > 20
    missing = [n for n in names if n not in text]
    assert not missing, missing


def test_hook_reference_lists_every_hookspec(site: Path) -> None:
    import compressor.core.hookspecs as hs

    text = _text(site / "reference" / "hooks" / "index.html")
    specs = [n for n in dir(hs) if n.startswith("compressor_") and callable(getattr(hs, n))]
    assert "compressor_loss_terms" in specs
    for name in specs:
        assert name in text, name


def test_readme_is_the_front_door_and_its_links_resolve() -> None:
    """The README stays short (the manual is docs/), and every relative link in it names a file that exists."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert "docs/tutorials/write-a-plugin.md" in local
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing
