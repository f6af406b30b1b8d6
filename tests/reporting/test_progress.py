"""Progress where a user waits: lines when the output is not a terminal (CI, nohup, a pipe), bars in one, and
the table of results at the end of a run."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support import SPECS, write_spec
from support.reliability import tiny

from compressor.cli import main
from compressor.core import progress
from compressor.core.progress import Progress, track

LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def _lines(out: str) -> list[str]:
    return [LINE.sub("", line) for line in out.splitlines() if LINE.match(line)]


@pytest.fixture(autouse=True)
def _auto_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPRESSOR_PROGRESS", raising=False)
    monkeypatch.delenv("COMPRESSOR_PROGRESS_INTERVAL", raising=False)
    progress.set_stream("stdout")


def test_a_run_not_on_a_terminal_prints_a_line_per_epoch_and_phase(tmp_path: Path, capsys) -> None:
    path = write_spec(tmp_path / "spec.yaml", tiny(tmp_path))
    assert main(["run", str(path)]) == 0
    out, err = capsys.readouterr()
    assert progress.mode() == "lines"  # captured output is not a terminal
    lines = _lines(out)
    assert lines[0] == "compute: 1 thread (the spec's trainer.threads)"
    assert lines[1] == "data synthetic_features: train 96, valid 32, test 32"
    for stage, steps in (("stage 1/2 train_teacher", 12), ("stage 2/2 distil", 6)):
        assert f"{stage}: started ({steps} steps)" in lines
        epochs = [line for line in lines if line.startswith(f"{stage}: epoch ")]
        assert [e.split(":")[1].strip() for e in epochs] == ["epoch 1/2", "epoch 2/2"], epochs
        assert re.search(r"step \d+/\d+, loss [\d.]+, (loss/\w+ [\d.e-]+, )*lr [\d.e-]+.*; valid/accuracy [\d.]+",
                         epochs[0])
        assert any(line.startswith(f"{stage}: done, {steps} steps in ") and "best accuracy" in line
                   for line in lines)
    assert "kd_weight 1;" in next(line for line in lines if line.startswith("stage 2/2 distil: epoch 1/2"))
    for model in ("teacher", "student"):
        assert any(re.match(rf"final evaluation: {model} on test: accuracy [\d.]+, loss", line) for line in lines)
    table = out.split("final evaluation (test split)\n", 1)[1]
    header, teacher, student = table.splitlines()[:3]
    assert header.split() == ["model", "parameters", "accuracy", "loss"]  # error_rate = 1 - accuracy: left out
    assert teacher.split()[:2] == ["teacher", "13,956"] and student.split()[:2] == ["student", "612"]
    assert "stages\n#  stage" in out and "summary: " in out
    assert err == ""  # standard error carries errors only


def test_a_running_phase_reports_count_rate_and_time_left(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("COMPRESSOR_PROGRESS_INTERVAL", "0")
    for _ in track(range(4), "final evaluation: student on test"):
        pass
    lines = _lines(capsys.readouterr().out)
    assert lines[0] == "final evaluation: student on test: started (4 batches)"
    assert re.fullmatch(r"final evaluation: student on test: 2/4 batches \(50%\), [\d.e+]+ batches/s, "
                        r"[\d.]+s left", lines[2]), lines
    assert re.fullmatch(r"final evaluation: student on test: done, 4 batches in [\d.]+s", lines[-1])


def test_a_failed_phase_does_not_claim_to_be_done(capsys) -> None:
    with pytest.raises(RuntimeError), Progress("export: parity", total=3, unit="check") as p:
        p.update()
        raise RuntimeError("parity failed")
    lines = _lines(capsys.readouterr().out)
    assert lines == ["export: parity: started (3 checks)"]


def test_feature_extraction_reports_progress(tmp_path: Path, capsys) -> None:
    from compressor.data.extract import extract_features
    from compressor.data.utterance import Utterance

    utts = []
    for i in range(3):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, np.zeros(1600, dtype=np.float32), 16000)
        utts.append(Utterance(id=f"u{i}", audio=path, text="a"))
    store, errors = extract_features(utts, "nemo", tmp_path / "cache", desc="nemo features: train")
    assert len(store) == 3 and errors == [None] * 3
    lines = _lines(capsys.readouterr().out)
    assert lines[0] == "nemo features: train: started (3 utts)"
    assert lines[-1].startswith("nemo features: train: done, 3 utts in ")
    extract_features(utts, "nemo", tmp_path / "cache", desc="nemo features: train")  # from the cache: quiet
    assert _lines(capsys.readouterr().out) == []


def test_corpus_synthesis_reports_progress(tmp_path: Path, capsys) -> None:
    from compressor.corpora.build import synthesize_to_files
    from compressor.corpora.corpus import CorpusSettings, plan

    settings = CorpusSettings(kind="read_speech", language="en", condition="clean", train_size=3, valid_size=1,
                              test_size=1, num_speakers=9, seed=0)
    items = plan(settings)["train"]
    durations = synthesize_to_files(items, tmp_path, workers=1, desc="synthesising corpus test")
    assert len(durations) == 3 and all(d > 0 for d in durations)
    lines = _lines(capsys.readouterr().out)
    assert lines[0] == "synthesising corpus test: started (3 utts)"
    assert lines[-1].startswith("synthesising corpus test: done, 3 utts in ")


def test_bars_on_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("COMPRESSOR_PROGRESS", "bar")
    with Progress("stage 1/1 train", total=5, unit="step") as p:
        for _ in range(5):
            p.update()
        p.metrics(loss=0.5)
        p.line("epoch 1/1: loss 0.5")
    out, err = capsys.readouterr()
    assert out == ""
    assert "stage 1/1 train: epoch 1/1: loss 0.5" in err and "stage 1/1 train: done, 5 steps in" in err
    assert "5/5" in err  # the bar itself


def test_json_output_keeps_progress_off_stdout(tmp_path: Path, capsys) -> None:
    progress.set_stream("stderr")
    try:
        progress.say("phase: started")
    finally:
        progress.set_stream("stdout")
    out, err = capsys.readouterr()
    assert out == "" and "phase: started" in err


def test_every_command_starts_with_progress_on_stdout(capsys) -> None:
    """A ``--json`` command earlier in the same process must not send a later command's progress to stderr."""

    progress.set_stream("stderr")  # what ``data --json`` leaves behind
    assert main(["validate", str(SPECS / "tiny_kd.yaml")]) == 0
    capsys.readouterr()
    progress.say("phase: started")
    out, err = capsys.readouterr()
    assert "phase: started" in out and err == ""
