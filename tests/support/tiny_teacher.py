"""A tiny shipped RNN-T teacher in the headline's shape, so the tests of ``specs/rnnt_lcmr.yaml`` never need the
package's real ``compressor/pretrained/rnnt_read_speech_en``.

The teacher is ``rnnt_lstm`` preset ``exp2_teacher`` (6 encoder + 2 prediction LSTM layers) at size ``tiny``,
``stack: 6``, trained a few steps on the tone corpus with the data facts the headline uses (character tokenizer of
the English alphabet, ``nemo`` front end), then written by ``compressor teacher ship``. The headline's
``module_replacing`` pairs its layers 6 -> 2 and 2 -> 1 with the student ``exp1_student``, ``size: tiny``, ``stack: 6``,
and ``init_student: first`` fits. :func:`headline_overrides` points the headline's teacher at the folder.
"""

from __future__ import annotations

from pathlib import Path

from support import run_cli, write_spec
from support.tones import write_tone_corpus

TEACHER = {"name": "rnnt_lstm", "preset": "exp2_teacher", "size": "tiny", "stack": 6}


def ship_tiny_teacher(root: Path) -> Path:
    """Train the tiny teacher under ``root`` (3 steps) and ship it; returns the shipped folder."""
    from compressor.run.engine import run_spec

    corpus = write_tone_corpus(root / "tones")
    spec = {"name": "tiny_headline_teacher", "seed": 0, "output_dir": str(root / "runs"), "task": {"name": "rnnt"},
            "data": {"name": "nemo_manifest", "train": str(corpus / "train.jsonl"),
                     "valid": str(corpus / "valid.jsonl"), "test": str(corpus / "test.jsonl"), "frontend": "nemo",
                     "tokenizer": "char"},
            "student": TEACHER, "trainer": {"progress_bar": False, "threads": 1},
            "stages": [{"name": "teacher", "train": ["student"], "steps": 3, "batch_size": 8,
                        "optimizer": {"name": "adamw", "lr": 0.003}}],
            "evaluate": {"split": "test", "models": ["student"]}}
    run_dir = run_spec(write_spec(root / "teacher.yaml", spec))
    out = root / "shipped" / "tiny_headline_teacher"
    done = run_cli("teacher", "ship", str(run_dir), "--model", "student", "--name", "tiny_headline_teacher",
                   "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def headline_overrides(teacher: Path) -> list[str]:
    """``--set`` items giving the headline ``teacher`` as the shipped folder and the student at size tiny."""
    return [f"teacher={{name: pretrained, path: '{teacher}'}}", "student.size=tiny"]
