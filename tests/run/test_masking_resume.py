"""A run with feature augmentation and masking plugins (recording level, VTLP, SpecAugment and hidden masking) killed
mid-stage and resumed ends bit-identical: their draws come from torch's global generator, which checkpoints save."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from support import run_cli, write_spec

from tests.run.test_engine_resume import _final_weights, _only_run, kill_mid_stage


def _masking_spec(tiny_spec: dict, out: Path) -> dict:
    spec = copy.deepcopy(dict(tiny_spec, output_dir=str(out)))
    spec["stages"][0]["epochs"] = 1
    distil = spec["stages"][1]
    distil.update(epochs=None, steps=150, checkpoint_every=3, grad_accum=1, batch_size=8)
    distil["eval"] = {"every": 20}
    distil["plugins"] = [
        {"name": "recording_level", "gain_db": [-20, 6], "silence": [0, 0.1]},
        {"name": "vtlp", "low": 0.85, "high": 1.15},
        {"name": "spec_augment", "freq_masks": 1, "freq_width": 3, "time_masks": 1, "time_width": 4,
         "time_warp": 1},
        {"name": "hidden_masking", "module": "encoder", "index": 0, "time_prob": 0.2, "time_span": 2,
         "channel_prob": 0.1, "channel_span": 2},
        *distil["plugins"],
    ]
    return spec


def test_killed_masking_run_resumes_bit_identical(tiny_spec: dict, tmp_path: Path) -> None:
    ref = run_cli("run", str(write_spec(tmp_path / "ref.yaml", _masking_spec(tiny_spec, tmp_path / "ref"))))
    assert ref.returncode == 0, ref.stderr
    ref_dir = _only_run(tmp_path / "ref")
    reference = _final_weights(ref_dir)

    spec = write_spec(tmp_path / "kill.yaml", _masking_spec(tiny_spec, tmp_path / "kill"))
    kill_mid_stage(spec, tmp_path / "kill", stage_index=1, steps=(20, 120))
    run_dir = _only_run(tmp_path / "kill")
    resumed = run_cli("run", str(spec), "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    final = _final_weights(run_dir)
    for name in reference:
        for key, tensor in reference[name].items():
            assert torch.equal(tensor, final[name][key]), f"{name}.{key} differs after resume"
    # the masks were really drawn, and identically: the logged masked fractions agree step for step
    def fractions(d: Path) -> list[tuple[float, float]]:
        rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        return [(r["spec_augment_masked"], r["hidden_masked"], r["vtlp_alpha"], r["recording_level_gain_db"])
                for r in rows if r.get("stage_index") == 1 and "type" not in r]
    got, want = fractions(run_dir), fractions(ref_dir)
    assert len(want) == 150 and got == want
    assert all(a > 0 and b > 0 and c != 1.0 and d != 0.0 for a, b, c, d in want[:10])
