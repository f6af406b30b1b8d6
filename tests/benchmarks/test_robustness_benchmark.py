"""benchmarks/checks/robustness.py: finished runs read back into the before/after table, ratios and paired claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_benchmark

robustness = load_benchmark("robustness")


def _run(folder: Path, seed: int, wer: dict[str, tuple[float, float, float]]) -> Path:
    run = folder / f"2026120{seed}-000000"
    (run / "final").mkdir(parents=True)
    final = {m: {"test/wer": t, "test_seen/wer": s} for m, (t, s, _) in wer.items()}
    sets = {"final": {m: {"heldout": {"wer": h}} for m, (_, _, h) in wer.items()}}
    (run / "final" / "COMPLETE").write_text(json.dumps({"final": final, "sets": sets}))
    (run / "resolved_spec.yaml").write_text(f"name: x\nseed: {seed}\n")
    return run


def test_table_ratios_and_claims(tmp_path: Path, capsys) -> None:
    for seed, gap in ((0, 0.10), (1, 0.12), (2, 0.11)):
        _run(tmp_path / "after", seed, {"teacher": (0.6, 0.4, 0.9), "student": (0.7, 0.5, 0.9),
                                        "student_alone": (0.7 + gap, 0.5 + gap, 0.9)})
    assert robustness.main(["--after", str(tmp_path / "after"), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "| after | teacher | 3 | 60.0% ± 0.0% (n = 3) | 40.0% ± 0.0% (n = 3) | 90.0% ± 0.0% (n = 3) | 1.50" in text
    summary = json.loads((tmp_path / "out" / "robustness.json").read_text())["summary"]
    assert sorted(summary["after"]["student"]["ratio"]) == ["0", "1", "2"]
    assert all(abs(v - 1.4) < 1e-9 for v in summary["after"]["student"]["ratio"].values())
    lines = [x for x in text.splitlines() if x.startswith("| after | test |")]
    assert lines and "+11.0" in lines[0] and "holds" in lines[0]  # the student is better, beyond the interval
    held = [x for x in text.splitlines() if x.startswith("| after | heldout |")]
    assert held and "+0.0" in held[0] and "holds" not in held[0]


def test_named_sides_are_compared_with_the_first(tmp_path: Path, capsys) -> None:
    for seed in range(3):
        _run(tmp_path / "before", seed, {m: (0.5, 0.125, 0.8) for m in ("teacher", "student", "student_alone")})
        _run(tmp_path / "voices", seed, {m: (0.3 + 0.01 * seed, 0.1, 0.8)
                                         for m in ("teacher", "student", "student_alone")})
    assert robustness.main(["--before", str(tmp_path / "before"),
                            "--side", f"58 words, voices={tmp_path / 'voices'}"]) == 0
    text = capsys.readouterr().out
    rows = {tuple(c.strip() for c in x.split("|")[1:4]): x for x in text.splitlines()
            if x.startswith("| 58 words, voices |")}
    assert "| 58 words, voices | student | 3 | 31.0% ± 1.0% (n = 3) | 10.0%" in text
    assert "+19.0 [" in rows[("58 words, voices", "student", "test")] and "holds" in rows[
        ("58 words, voices", "student", "test")]
    assert "+0.0" in rows[("58 words, voices", "student", "heldout")]
    assert "+0.90 [" in rows[("58 words, voices", "student", "unseen / seen")]  # 4.0 -> 3.1
    with pytest.raises(SystemExit) as refused:
        robustness.main(["--side", "no-folder"])
    assert refused.value.code == 2
