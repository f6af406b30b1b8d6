"""specs/quartznet_transfer.yaml runs end to end in one command (tiny sizes): the pre-training spec runs first,
German gets a new decoder, both languages are evaluated before and after, sherpa-onnx decodes the export.
The docs page's ``--set`` variants of the spec validate."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from support import REPO, run_cli

from compressor.spec import load_spec

CORPUS = "{train_size: 48, valid_size: 8, test_size: 8, num_speakers: 6}"
TINY_DATA = ["data.train_size=48", "data.valid_size=8", "data.test_size=8", "data.num_speakers=6"]
TINY_MODEL = ["student.size=tiny", "student.preset=5x1", "trainer.progress_bar=false", "trainer.threads=1"]


def test_transfer_spec_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    pre = TINY_DATA + TINY_MODEL + ["stages[0].steps=6", "stages[0].eval.every=3"]
    sets = ["--set", "evaluate.sets.source.data={name: read_speech, language: en, frontend: nemo_ctc, "
            + CORPUS[1:]]
    args = ["run", str(REPO / "specs" / "quartznet_transfer.yaml"), "--set", f"output_dir={out}",
            "--set", "student.init_from.set=[" + ", ".join(f"'{o}'" for o in pre) + "]", *sets]
    for o in TINY_DATA + TINY_MODEL + ["stages[0].steps=3", "stages[0].eval.every=3",
                                       "export.decode_utterances=4", "export.valid_utterances=4",
                                       "export.calibration_utterances=4", "export.bench_utterances=2",
                                       "export.parity_batch_sizes=[1,2]", "export.min_transcript_match=0.5"]:
        args += ["--set", o]
    done = run_cli(*args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "running it first" in done.stdout
    (pre_run,) = [p.parent.parent for p in out.glob("quartznet_pretrain_en/*/final/COMPLETE")]
    (run_dir,) = [p.parent.parent for p in out.glob("quartznet_transfer/*/final/COMPLETE")]
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    init = results["init_from"]["student"]
    assert init["source"] == str(pre_run / "final" / "student.pt")
    assert [s["key"] for s in init["skipped"]] == ["decoder.weight", "decoder.bias"]  # a new German decoder
    for when in ("start", "final"):
        assert set(results["sets"][when]["student"]) == {"target", "source"}
    assert "| student (before training) |" in (run_dir / "summary.md").read_text()
    assert results["export"]["report"]["family"] == "ctc"
    transcripts = results["export"]["report"]["transcripts"]
    assert transcripts["utterances"] == 4 and transcripts["exact_match"] >= 0.5
    tokens = (run_dir / "export" / "tokens.txt").read_text()
    assert "ß " in tokens and tokens.splitlines()[-1] == "<blk> 32"


def readme_variants() -> list[list[str]]:
    """The ``--set`` overrides of every ``compressor run specs/quartznet_transfer.yaml`` line in its docs page."""
    text = (REPO / "docs" / "papers" / "seed003-quartznet.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if words[:3] == ["compressor", "run", "specs/quartznet_transfer.yaml"]:
                out.append([w for i, w in enumerate(words) if i and words[i - 1] == "--set"])
    return out


VARIANTS = readme_variants()


def test_readme_lists_the_variants() -> None:
    flat = " ".join(" ".join(v) for v in VARIANTS)
    for needed in ("language=es", "language=ru", "condition: accent", "condition: domain", "name: mix",
                   "init_from=null"):
        assert needed in flat, needed


@pytest.mark.parametrize("overrides", VARIANTS, ids=[str(i) for i in range(len(VARIANTS))])
def test_readme_variants_validate(overrides: list[str]) -> None:
    loaded = load_spec(REPO / "specs" / "quartznet_transfer.yaml", overrides)
    scratch = "student.init_from=null" in overrides
    assert (loaded.spec.student.init_from is None) == scratch
