"""Every ready-to-run spec validates, and the quickstart runs end to end (shortened)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support import REPO, run_cli

from compressor.spec import load_spec

SPEC_FILES = sorted((REPO / "specs").glob("*.yaml"))
PACKAGE_PRETRAINED = REPO / "compressor" / "pretrained"


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_shipped_specs_validate(path: Path) -> None:
    loaded = load_spec(path)
    assert loaded.spec.stages


def test_the_headline_teacher_is_shipped_in_the_package() -> None:
    """specs/rnnt_lcmr.yaml's teacher is in the checkout (and so in the wheel), small and safetensors only."""
    teacher = yaml.safe_load((REPO / "specs" / "rnnt_lcmr.yaml").read_text(encoding="utf-8"))["teacher"]
    folder = PACKAGE_PRETRAINED / teacher["id"]
    files = {p.name for p in folder.iterdir()}
    assert {"model.json", "model.safetensors"} <= files and not any(n.endswith((".pt", ".pkl", ".bin")) for n in files)
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 10 * 1024 * 1024


def test_quickstart_runs_end_to_end(tmp_path: Path) -> None:
    done = run_cli("run", str(REPO / "specs" / "quickstart.yaml"), f"--set=output_dir={tmp_path}",
                   "--set=stages[0].epochs=1", "--set=stages[1].epochs=1", "--set=data.train_size=120",
                   "--set=data.valid_size=30", "--set=data.test_size=30", "--set=export.enabled=false")
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = tmp_path.glob("quickstart/*")
    summary = (run_dir / "summary.md").read_text()
    assert "| student | seq_classifier |" in summary and "test/accuracy" in summary
    assert "| student_alone (the same student trained alone) |" in summary  # baseline: on in the quickstart
