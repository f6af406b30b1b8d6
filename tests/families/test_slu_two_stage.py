"""specs/slu_two_stage.yaml end to end, shortened: text teacher, k-means units + MLM, PT-KD, AM-PT with CTC,
fine-tuning with FT-KD and DA, evaluated and exported for onnxruntime; and the ablation's switches."""

from __future__ import annotations

import json
from pathlib import Path

from support import REPO, run_cli

READ = ["train_size=40", "valid_size=8", "test_size=8", "num_speakers=6", "workers=1"]
SHORT = ["data.train_size=48", "data.valid_size=12", "data.test_size=12", "data.num_speakers=6", "data.workers=1",
         "student.size=tiny", "trainer.progress_bar=false", "trainer.threads=1",
         *[f"stages[{i}].data.{kv}" for i in (1, 2, 3) for kv in READ],
         "stages[1].plugins[0].max_frames=2000", "stages[1].plugins[0].iterations=3",
         "stages[0].epochs=1", "stages[1].epochs=1", "stages[2].epochs=1", "stages[3].epochs=1", "stages[4].epochs=2",
         "stages[4].plugins[3].time_span=2", "stages[4].plugins[3].channel_span=2",
         "export.decode_utterances=4", "export.valid_utterances=8", "export.calibration_utterances=4",
         "export.bench_utterances=2", "export.parity_batch_sizes=[1,2]"]


def test_slu_two_stage_spec_runs_end_to_end(tmp_path: Path, tiny_bert: Path) -> None:
    args = ["run", str(REPO / "specs" / "slu_two_stage.yaml"), f"--set=output_dir={tmp_path}",
            f"--set=teacher.path={tiny_bert}"]
    done = run_cli(*args, *[f"--set={o}" for o in SHORT])
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "slu_two_stage").iterdir()
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    assert [s["stage"] for s in results["stages"]] == ["teacher", "mlm", "pt_kd", "am_pt", "finetune"]
    assert [s["metric"] for s in results["stages"][1:]] == ["unit_accuracy", "unit_accuracy", "cer", "accuracy"]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    by = {name: [r for r in rows if r.get("stage") == name and "type" not in r] for name in
          ("mlm", "pt_kd", "am_pt", "finetune")}
    assert by["mlm"][0]["kmeans_codes_used"] > 1 and by["mlm"][0]["kmeans_distortion"] > 0
    assert all(r["loss/repr_cls"] > 0 for r in by["pt_kd"])
    assert len({r["trainable_parameters"] for r in by["am_pt"]}) == 1
    ft = by["finetune"]
    assert all(r["loss/logit_kd"] > 0 and r["weight/logit_kd"] == 1.0 for r in ft)
    for key in ("tokens_masked", "hidden_masked"):  # p M = 0.1 nominal, overlapping spans mask less
        assert 0.02 < sum(r[key] for r in ft) / len(ft) < 0.3
    lrs = [r["lr"] for r in ft]
    assert max(lrs) / min(lrs) > 1.04  # annealed by gamma = 1.05 after the first epoch
    export = run_dir / "export"
    report = json.loads((export / "export_report.json").read_text())
    assert report["family"] == "classifier" and report["classification"]["agreement"] == 1.0


def test_far_field_commands_are_the_clean_utterances_recorded_far(tmp_path: Path) -> None:
    import torch

    from compressor.corpora.datasets import CommandsArgs, build_commands

    sizes = {"train_size": 6, "valid_size": 3, "test_size": 3, "num_speakers": 6, "workers": 1}
    clean = build_commands(CommandsArgs(**sizes), cache_dir=tmp_path)
    far = build_commands(CommandsArgs(**sizes, recording="far"), cache_dir=tmp_path)
    for split in ("train", "test"):
        a, b = clean.dataset(split), far.dataset(split)
        assert [a[i]["text"] for i in range(len(a))] == [b[i]["text"] for i in range(len(b))]
        fa, fb = a[0]["features"], b[0]["features"]
        n = min(len(fa), len(fb))
        assert not torch.allclose(fa[:n], fb[:n], atol=1.0)  # noise and reverberation changed the recording
    corpora = {p.name.rsplit("-", 1)[0] for p in tmp_path.glob("**/commands*") if p.is_dir()}
    assert corpora == {"commands", "commands-far"}  # cached side by side, the clean one unchanged


def test_ablation_switches_skip_stages_and_plugins(tmp_path: Path, tiny_bert: Path) -> None:
    """The baseline of Table 2 as overrides: no PT-KD, no AM-PT, fine-tuning without FT-KD and DA."""
    done = run_cli("run", str(REPO / "specs" / "slu_two_stage.yaml"), f"--set=output_dir={tmp_path}",
                   f"--set=teacher.path={tiny_bert}", *[f"--set={o}" for o in SHORT if "plugins[3]" not in o],
                   "--set=stages[2].enabled=false", "--set=stages[3].enabled=false", "--set=export.enabled=false",
                   "--set=stages[4].plugins=[{name: layer_freezing, model: student, modules: [encoder]}]")
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "slu_two_stage").iterdir()
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    assert [s["stage"] for s in results["stages"]] == ["teacher", "mlm", "finetune"]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ft = [r for r in rows if r.get("stage") == "finetune" and "type" not in r]
    assert ft and not any("loss/logit_kd" in r or "tokens_masked" in r for r in ft)
    assert not any(r.get("stage") in ("pt_kd", "am_pt") for r in rows)
