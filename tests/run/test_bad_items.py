"""One bad item does not kill a run, and a bad model is named: hostile paths, over-long and absurd audio are
skipped and listed; non-finite weights are refused naming the parameter; a model not asked for is not read;
random bytes in a checkpoint are one clear line."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from support import write_spec
from support.reliability import cli, one_line, tiny

from compressor.data.datasets import NemoManifestArgs, build_nemo_manifest
from compressor.run.engine import run_spec


def _wav(path: Path, seconds: float, rate: int = 16000, subtype: str = "PCM_16", scale: float = 0.3) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (scale * np.sin(2 * math.pi * 300 * t)).astype(np.float32), rate, subtype=subtype)
    return path


def _line(audio: str, duration: float = 0.6) -> str:
    return json.dumps({"audio_filepath": audio, "text": "go home", "duration": duration})


def _manifest(tmp_path: Path, bad: list[str]) -> Path:
    _wav(tmp_path / "good.wav", 0.6)
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join([_line("good.wav"), *bad, _line("good.wav")]) + "\n")
    return path


def test_hostile_items_are_skipped_and_listed(tmp_path: Path) -> None:
    _wav(tmp_path / "eleven_minutes.wav", 660, rate=8000, subtype="PCM_U8")  # 5 MB on disk, 11 min of audio
    _wav(tmp_path / "loud.wav", 0.6, subtype="FLOAT", scale=1e30)
    bad = {
        "nul in path": (_line("good\u0000.wav"), "bad_path"),
        "newline in path": (_line("go\nod.wav"), "bad_path"),
        "11 min, manifest says 1 s": (_line("eleven_minutes.wav", 1.0), "too_long"),
        "samples at 1e30": (_line("loud.wav"), "amplitude"),
    }
    path = _manifest(tmp_path, [line for line, _ in bad.values()])
    dm = build_nemo_manifest(NemoManifestArgs(train=str(path), valid=str(path)), cache_dir=tmp_path / "cache")
    assert len(dm.dataset("train")) == 2, dm.skipped
    train = [s for s in dm.skipped if s["split"] == "train"]
    assert [s["reason"] for s in train] == [reason for _, reason in bad.values()], train


def test_the_item_limit_is_read_from_the_header(tmp_path: Path) -> None:
    _wav(tmp_path / "two_seconds.wav", 2.0)
    path = _manifest(tmp_path, [_line("two_seconds.wav", 0.5)])
    dm = build_nemo_manifest(NemoManifestArgs(train=str(path), valid=str(path), max_item_seconds=1.5),
                             cache_dir=tmp_path / "cache")
    assert [s["reason"] for s in dm.skipped if s["split"] == "train"] == ["too_long"]
    assert "1.5 s limit" in dm.skipped[0]["message"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("finished")
    return run_spec(write_spec(tmp / "spec.yaml", tiny(tmp)))


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs" / "tiny_kd" / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy


def test_non_finite_weights_are_refused_naming_the_parameter(finished: Path, tmp_path: Path, capsys) -> None:
    run_dir = _copy(finished, tmp_path)
    path = run_dir / "final" / "student.pt"
    state = torch.load(path, weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name][0] = float("nan")
    torch.save(state, path)
    described = path.with_name("student.model.json")  # as a run that diverged would have described them
    desc = json.loads(described.read_text())
    desc["weights"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    described.write_text(json.dumps(desc))
    code, err = cli(capsys, "eval", run_dir, "--models", "student")
    assert code == 2 and f"parameter '{name}'" in one_line(err) and "non-finite" in err, err
    code, err = cli(capsys, "export", run_dir, "--out", tmp_path / "onnx")
    assert code == 2 and f"parameter '{name}'" in one_line(err), err
    assert not (tmp_path / "onnx").exists()


def test_a_corrupt_teacher_does_not_block_the_student(finished: Path, tmp_path: Path, capsys) -> None:
    run_dir = _copy(finished, tmp_path)
    (run_dir / "final" / "teacher.pt").write_bytes(os.urandom(4096))
    code, err = cli(capsys, "eval", run_dir, "--models", "student")
    assert code == 0, err
    code, err = cli(capsys, "export", run_dir, "--out", tmp_path / "onnx")
    assert code == 0, err
    assert (tmp_path / "onnx" / "export_manifest.json").exists()


def test_random_bytes_in_a_checkpoint_are_one_clear_line(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "student.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(20000))
    spec = tiny(tmp_path)
    spec["student"]["checkpoint"] = str(junk)
    code, err = cli(capsys, "run", write_spec(tmp_path / "spec.yaml", spec))
    line = one_line(err)
    assert code == 2 and str(junk) in line and "not a readable torch checkpoint" in line, err


def test_a_missing_output_key_is_refused_at_validation(tmp_path: Path, capsys) -> None:
    spec = tiny(tmp_path)
    spec["stages"][1]["plugins"][0]["logits_key"] = "nope"
    code, err = cli(capsys, "validate", write_spec(tmp_path / "spec.yaml", spec))
    line = one_line(err)
    assert code == 2 and "stages[1].plugins[0].logits_key" in line and "no output 'nope'" in line, err
    assert "logits" in line  # the valid keys are listed
