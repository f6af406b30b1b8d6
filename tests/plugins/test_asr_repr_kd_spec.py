"""tests/support/specs/asr_repr_kd.yaml: representation KD + SpecAugment on a CTC student, end to end."""

from __future__ import annotations

import json
from pathlib import Path

from support import SPECS, run_cli


def test_representation_kd_with_spec_augment_on_an_asr_student(tmp_path: Path) -> None:
    done = run_cli("run", str(SPECS / "asr_repr_kd.yaml"), f"--set=output_dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "asr_repr_kd").iterdir()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r.get("stage") == "distil" and "type" not in r]
    assert len(steps) == 6
    for r in steps:
        assert r["loss/repr_block1"] > 0 and 0 <= r["loss/repr_utterance"] <= 2
        assert 0 < r["spec_augment_masked"] < 1
    assert steps[1]["weight/repr_utterance"] < steps[0]["weight/repr_utterance"]  # exp decay per step
    final = {r["model"]: r for r in rows if r.get("type") == "final"}
    assert "test/wer" in final["student"] and "test/wer" in final["teacher"]
    assert sorted(p.stem for p in (run_dir / "final").glob("*.pt")) == ["student", "teacher"]
