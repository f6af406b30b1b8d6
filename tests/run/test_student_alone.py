"""``baseline.student_alone``: the same student trained alone in the same run, reported beside the compressed one."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from support import write_spec

from compressor.cli import main
from compressor.run import trainer
from compressor.run.engine import run_spec
from compressor.run.finished import evaluate_run


def _alone_spec(tiny_spec: dict, out: Path) -> dict:
    spec = dict(copy.deepcopy(tiny_spec), output_dir=str(out), baseline={"student_alone": True, "model": "student"})
    spec["stages"][1]["plugins"].append({"name": "spec_augment", "freq_masks": 1, "freq_width": 2,
                                         "time_masks": 1, "time_width": 2})
    return spec


def _only_run(root: Path) -> Path:
    runs = sorted(p for p in root.glob("*/*") if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def _final(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.stem: torch.load(p, weights_only=True) for p in sorted((run_dir / "final").glob("*.pt"))}


def test_the_student_trains_alone_beside_the_compressed_one(tiny_spec: dict, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    starts: dict[str, dict[str, torch.Tensor]] = {}
    execute = trainer.StageRunner.execute

    def recording(self: trainer.StageRunner, resume: Any = None) -> dict[str, Any]:
        starts[self.stage.name] = {k: v.clone() for k, v in self.run.models["student"].state_dict().items()}
        return execute(self, resume)

    monkeypatch.setattr(trainer.StageRunner, "execute", recording)
    run_dir = run_spec(write_spec(tmp_path / "spec.yaml", _alone_spec(tiny_spec, tmp_path / "runs")))

    assert list(starts) == ["train_teacher", "distil", "distil_alone"]
    for key, value in starts["distil"].items():  # the same initialisation (the same seed)
        assert torch.equal(value, starts["distil_alone"][key]), key
    final = _final(run_dir)
    assert (run_dir / "final" / "student_alone.model.json").exists()
    assert any(not torch.equal(v, final["student_alone"][k]) for k, v in final["student"].items())

    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    alone_steps = [r for r in records if r.get("stage") == "distil_alone" and "loss/total" in r]
    assert len(alone_steps) == 6
    assert all("loss/logit_kd" not in r and "kd_weight" not in r for r in alone_steps)  # no teacher in it
    assert all("spec_augment_masked" in r for r in alone_steps)  # the data-side strategy stays
    assert any(r.get("type") == "final" and r["model"] == "student_alone" for r in records)
    complete = json.loads((run_dir / "final" / "COMPLETE").read_text())
    assert "test/accuracy" in complete["final"]["student_alone"]
    again = evaluate_run(run_dir, "test", ["student_alone"])["student_alone"]  # what `compressor eval` loads
    assert again["accuracy"] == pytest.approx(complete["final"]["student_alone"]["test/accuracy"])

    summary = (run_dir / "summary.md").read_text()
    table = summary.split("## student against the same student trained alone")[1].split("\n\n")[1]
    rows = [line.split(" | ")[0].strip("| ") for line in table.splitlines()[2:]]
    assert rows == ["teacher", "student (compressed)", "student_alone (the same student trained alone)",
                    "student vs student_alone (relative: (student - student_alone) / student_alone)"]
    assert "without logit_kd, with spec_augment" in summary


def test_a_run_killed_while_the_student_trains_alone_resumes_exactly(tiny_spec: dict, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    reference = _final(run_spec(write_spec(tmp_path / "ref.yaml", _alone_spec(tiny_spec, tmp_path / "ref"))))

    save = trainer.StageRunner._save

    def killed(self: trainer.StageRunner, ctx: Any, *args: Any) -> None:
        save(self, ctx, *args)
        if self.stage.name == "distil_alone" and ctx.step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer.StageRunner, "_save", killed)
    spec = write_spec(tmp_path / "kill.yaml", _alone_spec(tiny_spec, tmp_path / "kill"))
    with pytest.raises(KeyboardInterrupt):
        run_spec(spec)
    monkeypatch.setattr(trainer.StageRunner, "_save", save)
    run_dir = _only_run(tmp_path / "kill")
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["phase"] == "alone" and state["kind"] == "mid_stage" and state["position"]["step"] == 2

    run_spec(None, resume=run_dir)
    final = _final(run_dir)
    assert final.keys() == reference.keys() == {"teacher", "student", "student_alone"}
    for name in reference:
        for key, value in reference[name].items():
            assert torch.equal(value, final[name][key]), (name, key)
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("stage") == "distil_alone" and "loss/total" in r] == [1, 2, 3, 4,
                                                                                                      5, 6]


def test_a_run_killed_between_the_stages_and_the_alone_training_resumes_exactly(
        tiny_spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = _final(run_spec(write_spec(tmp_path / "ref.yaml", _alone_spec(tiny_spec, tmp_path / "ref"))))
    execute = trainer.StageRunner.execute

    def killed(self: trainer.StageRunner, resume: Any = None) -> dict[str, Any]:
        if self.stage.name == "distil_alone":
            raise KeyboardInterrupt
        return execute(self, resume)

    monkeypatch.setattr(trainer.StageRunner, "execute", killed)
    with pytest.raises(KeyboardInterrupt):
        run_spec(write_spec(tmp_path / "kill.yaml", _alone_spec(tiny_spec, tmp_path / "kill")))
    monkeypatch.setattr(trainer.StageRunner, "execute", execute)
    run_dir = _only_run(tmp_path / "kill")
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["kind"] == "stage_end" and state["stage_index"] == 2 and "phase" not in state

    run_spec(None, resume=run_dir)
    final = _final(run_dir)
    for name in reference:
        for key, value in reference[name].items():
            assert torch.equal(value, final[name][key]), (name, key)


def test_turned_off_with_a_set(tiny_spec: dict, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec.yaml", _alone_spec(tiny_spec, tmp_path / "runs"))
    run_dir = run_spec(spec, ["baseline.student_alone=false"])
    assert not (run_dir / "final" / "student_alone.pt").exists()
    assert "trained alone" not in (run_dir / "summary.md").read_text()


@pytest.mark.parametrize("change, where, fragment", [
    ({"stages.1.enabled": False}, "baseline.model", "model 'student' is not trained by any (enabled) stage"),
    ({"baseline.model": "teacherr"}, "baseline.model", "unknown model 'teacherr'"),
    ({"stages.1.forward": "teacher"}, "stages[1].forward", "training 'student' alone needs stages that train "
                                                           "it through itself"),
])
def test_validate_refuses_a_model_no_stage_trains(tiny_spec: dict, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str], change: dict, where: str,
                                                   fragment: str) -> None:
    spec = _alone_spec(tiny_spec, tmp_path / "runs")
    for key, value in change.items():
        *parents, last = key.split(".")
        node: Any = spec
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[last] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert where in err and fragment in err, err


def test_the_alone_stages_keep_only_what_needs_no_teacher(tiny_spec: dict, tmp_path: Path) -> None:
    from compressor.plugins import get_plugins
    from compressor.reporting.catalog import catalog
    from compressor.run.alone import alone_spec
    from compressor.spec import load_spec

    registry = get_plugins().registry
    loaded = load_spec(write_spec(tmp_path / "spec.yaml", _alone_spec(tiny_spec, tmp_path / "runs")),
                       registry=registry)
    alone, plan = alone_spec(loaded, registry)
    (stage,) = alone.spec.stages
    assert stage.name == "distil_alone" and stage.train == ["student"] and stage.frozen == []
    assert [p.name for p in stage.plugins] == ["spec_augment"] and len(alone.stages[0].plugin_args) == 1
    assert plan == [{"stage": "distil", "kept": ["spec_augment"], "left_out": ["logit_kd"]}]
    needs = {c["name"]: c["needs_teacher"] for p in catalog() for c in p["components"] if c["kind"] == "strategy"}
    assert needs["logit_kd"] and needs["module_replacing"] and not needs["spec_augment"]
