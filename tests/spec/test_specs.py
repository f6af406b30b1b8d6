"""Every ready-to-run spec validates, and the quickstart runs end to end (shortened)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import REPO, run_cli

from compressor.spec import load_spec

SPEC_FILES = sorted((REPO / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_shipped_specs_validate(path: Path) -> None:
    loaded = load_spec(path)
    assert loaded.spec.stages


def test_quickstart_runs_end_to_end(tmp_path: Path) -> None:
    done = run_cli("run", str(REPO / "specs" / "quickstart.yaml"), f"--set=output_dir={tmp_path}",
                   "--set=stages[0].epochs=1", "--set=stages[1].epochs=1", "--set=data.train_size=120",
                   "--set=data.valid_size=30", "--set=data.test_size=30", "--set=export.enabled=false")
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = tmp_path.glob("quickstart/*")
    summary = (run_dir / "summary.md").read_text()
    assert "| student | seq_classifier |" in summary and "test/accuracy" in summary
    assert "| student_alone (the same student trained alone) |" in summary  # baseline: on in the quickstart
