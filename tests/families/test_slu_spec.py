"""specs/slu_crossmodal.yaml end to end, shortened: text teacher and professor fine-tuned, the acoustic module
pre-trained with CTC on read speech and on the commands audio, the SLU student trained with cached logit KD,
evaluated and exported for onnxruntime through the classifier path."""

from __future__ import annotations

import json
from pathlib import Path

from support import REPO, run_cli

SHORT = ["data.train_size=48", "data.valid_size=12", "data.test_size=12", "data.num_speakers=6", "data.workers=1",
         "student.size=tiny", "trainer.progress_bar=false", "trainer.threads=1",
         "stages[2].data.train_size=40", "stages[2].data.valid_size=8", "stages[2].data.test_size=8",
         "stages[2].data.num_speakers=6", "stages[2].data.workers=1",
         "stages[0].epochs=1", "stages[1].epochs=1", "stages[2].epochs=1", "stages[3].epochs=1", "stages[4].epochs=2",
         "export.decode_utterances=4", "export.valid_utterances=8", "export.calibration_utterances=4",
         "export.bench_utterances=2", "export.parity_batch_sizes=[1,2]"]


def test_slu_crossmodal_spec_runs_end_to_end(tmp_path: Path, tiny_bert: Path) -> None:
    args = ["run", str(REPO / "specs" / "slu_crossmodal.yaml"), f"--set=output_dir={tmp_path}",
            f"--set=teacher.path={tiny_bert}", f"--set=models.professor.path={tiny_bert}"]
    # seed 000's cross-modal [CLS] L1 (a learned projection, the text teacher cached) on top of the recipe
    repr_kd = ("stages[4].plugins[2]={name: representation_kd, cache: true, pairs: [{name: cls, teacher: "
               "{output: cls}, student: {output: hidden}, loss: l1, reduction: sum, weight: 0.1}]}")
    done = run_cli(*args, *[f"--set={o}" for o in SHORT], f"--set={repr_kd}")
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "slu_crossmodal").iterdir()
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    assert [s["stage"] for s in results["stages"]] == ["teacher", "professor", "asr_read_speech", "asr_commands",
                                                       "slu"]
    assert results["stages"][2]["metric"] == "cer" and results["stages"][4]["metric"] == "accuracy"
    assert set(results["final"]) == {"teacher", "professor", "student"}
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    slu = [r for r in rows if r.get("stage") == "slu" and "type" not in r]
    assert slu[0]["teacher_cache_hits"] == 0.0 and slu[-1]["teacher_cache_hits"] == 1.0
    assert slu[0]["kd_weight"] == 1.0 and slu[-1]["kd_weight"] < 0.5  # exp(1 - t), t in epochs
    assert all(r["loss/repr_cls"] > 0 for r in slu) and slu[-1]["weight/repr_cls"] == 0.1
    frozen = {r["trainable_parameters"] for r in slu}
    assert len(frozen) == 1  # the acoustic module stayed frozen (the projection is not the student's)
    export = run_dir / "export"
    assert (export / "model.onnx").exists() and (export / "labels.txt").read_text().count("\n") == 31
    report = json.loads((export / "export_report.json").read_text())
    assert report["family"] == "classifier" and report["classification"]["agreement"] == 1.0
