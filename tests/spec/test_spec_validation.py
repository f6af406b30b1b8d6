"""Bad specs: one clear message naming file, line and key path; exit code 2; nothing run or written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support import SPECS, run_cli, write_spec

from compressor.core.errors import SpecError
from compressor.spec import apply_overrides, load_spec, parse_override

TINY = (SPECS / "tiny_kd.yaml").read_text()


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    assert old in TINY, old
    path = tmp_path / "bad.yaml"
    path.write_text(TINY.replace(old, new, 1))
    return path


CASES = [
    # (old text, new text, expected fragments of the message)
    ("epochs: 2", "epochs: -1", ["stages[0].epochs", "greater than or equal to 1", "bad.yaml:14"]),
    ("name: logit_kd", "name: logit_kdd", ["stages[1].plugins[0]", "unknown strategy 'logit_kdd'",
                                           "did you mean 'logit_kd'"]),
    ("temperature: 2.0", "temprature: 2.0", ["stages[1].plugins[0].temprature", "did you mean 'temperature'"]),
    ("temperature: 2.0", "temperature: -2.0", ["stages[1].plugins[0].temperature", "greater than 0"]),
    ("encoder: lstm, hidden: 32", "encoder: lsmt, hidden: 32", ["teacher.encoder", "'lstm', 'conv' or 'mlp'"]),
    ("name: seq_classifier, encoder: lstm, hidden: 8", "name: seq_clasifier, encoder: lstm, hidden: 8",
     ["at student", "unknown model 'seq_clasifier'", "did you mean 'seq_classifier'"]),
    ("batch_size: 16", "batchsize: 16", ["stages[0].batchsize", "did you mean 'batch_size'"]),
    ("hidden: 32", 'hidden: "big"', ["teacher.hidden", "valid integer", "'big'"]),
    ("frozen: [teacher]", "frozen: [teachr]", ["stages[1].frozen[0]", "did you mean 'teacher'"]),
    ("weight: {name: exp_decay}", "weight: {name: exp_decya}", ["stages[1].plugins[0].weight",
                                                              "did you mean 'exp_decay'"]),
    ("weight: {name: exp_decay}", "weight: {name: exp_decay, scale: -1}",
     ["plugins[0].weight", "schedule 'exp_decay': scale: expected greater than or equal to 0"]),
    ("task: {name: classification}", "task: {name: clasification}", ["at task", "did you mean 'classification'"]),
    ("train: [student]", "train: [student]\n    forward: techer", ["stages[1].forward", "did you mean 'teacher'"]),
    ("name: distil", "name: train_teacher", ["stages[1].name", "duplicate stage name"]),
    ("frozen: [teacher]", "frozen: [teacher, student]", ["stages[1].frozen", "both trained and frozen"]),
    ("student: {name: seq_classifier,", "student: {checkpoint: /no/such.pt, name: seq_classifier,",
     ["student.checkpoint", "not found"]),
    ("name: tiny_kd", "name: tiny kd!", ["at name", "pattern"]),
    ("models: [teacher, student]}", "models: [teacher, student],\n  references: [{label: alone, metrics: "
     "{test/accuracy: 0.5}, std: {test/accuracy: -0.1}}]}",
     ["evaluate.references[0].std.test/accuracy", "greater than or equal to 0", "bad.yaml:"]),
    ("models: [teacher, student]}", "models: [teacher, student],\n  references: [{label: alone, metrics: "
     "{test/accuracy: 0.5}, std: {test/accuracy: .nan}}]}",
     ["evaluate.references[0].std.test/accuracy", "finite"]),
    ("models: [teacher, student]}", "models: [teacher, student],\n  references: [{label: alone, metrics: "
     "{test/accuracy: .inf}}]}", ["evaluate.references[0].metrics.test/accuracy", "finite"]),
]


@pytest.mark.parametrize(("old", "new", "fragments"), CASES, ids=[c[1][:30] for c in CASES])
def test_bad_spec_messages(tmp_path: Path, old: str, new: str, fragments: list[str]) -> None:
    path = _variant(tmp_path, old, new)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize(("text", "fragment"), [
    ("name: x\n  bad: [1,\n", "malformed YAML"),
    ('!!python/object/apply:os.system ["touch PWNED"]\n', "is not allowed"),
    ('name: x\nseed: !!python/object/new:os.system ["touch PWNED"]\n', "is not allowed"),
    ("", "the spec is empty"),
    ("- a\n- b\n", "must be a mapping"),
    ("just a string\n", "must be a mapping"),
    ("name: x\n", "required key is missing"),
])
def test_bad_yaml_exits_2_without_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture, text: str, fragment: str) -> None:
    from compressor.cli import main

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    for command in ("validate", "run"):
        assert main([command, str(spec)]) == 2
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "PWNED").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # nothing written


def test_bad_yaml_via_a_real_process(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text('!!python/object/apply:os.system ["touch PWNED"]\n')
    done = run_cli("run", str(spec), cwd=tmp_path)
    assert done.returncode == 2 and "is not allowed" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "PWNED").exists()


def test_negative_reference_std_exits_2(tmp_path: Path) -> None:
    proc = run_cli("validate", str(SPECS / "tiny_kd.yaml"), "--set",
                   "evaluate.references=[{label: alone, metrics: {test/accuracy: 0.5}, std: {test/accuracy: -1}}]")
    assert proc.returncode == 2
    assert "evaluate.references[0].std.test/accuracy" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_spec_file(tmp_path: Path) -> None:
    done = run_cli("run", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert done.returncode == 2 and "not found" in done.stderr and "Traceback" not in done.stderr


def test_run_with_bad_plugin_args_writes_nothing(tmp_path: Path, tiny_spec: dict) -> None:
    tiny_spec["stages"][1]["plugins"][0]["loss"] = "kll"
    spec = write_spec(tmp_path / "s.yaml", tiny_spec)
    done = run_cli("run", str(spec), cwd=tmp_path)
    assert done.returncode == 2
    assert "stages[1].plugins[0].loss" in done.stderr and "'kl'" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_overrides(tmp_path: Path) -> None:
    assert parse_override("stages[1].epochs=3") == (["stages", 1, "epochs"], 3)
    assert parse_override("stages.1.plugins.0.loss=mse") == (["stages", 1, "plugins", 0, "loss"], "mse")
    data = yaml.safe_load(TINY)
    out = apply_overrides(data, ["stages[0].epochs=5", "teacher.hidden=7", "trainer.threads=2"])
    assert out["stages"][0]["epochs"] == 5 and out["teacher"]["hidden"] == 7 and out["trainer"]["threads"] == 2
    assert data["stages"][0]["epochs"] == 2  # the original is untouched
    path = tmp_path / "s.yaml"
    path.write_text(TINY)
    loaded = load_spec(path, ["stages[1].plugins[0].temperature=4"])
    assert loaded.stages[1].plugin_args[0].temperature == 4.0
    with pytest.raises(SpecError, match=r"stages\[1\]\.plugins\[0\]\.loss"):
        load_spec(path, ["stages[1].plugins[0].loss=kll"])
    with pytest.raises(SpecError, match="no list item 7"):
        load_spec(path, ["stages[7].epochs=1"])
    with pytest.raises(SpecError, match="KEY.PATH=VALUE"):
        load_spec(path, ["stages"])
