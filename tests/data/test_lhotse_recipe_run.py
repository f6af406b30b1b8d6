"""A run's data through lhotse end to end: a tiny LibriSpeech-layout folder written here is prepared by lhotse's
``librispeech`` recipe through the ``lhotse`` dataset, batched by lhotse's sampler, and trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import write_spec
from support.reliability import cli

from tests.data.test_data_formats import tone, write

WORDS = ["GO HOME", "STOP NOW", "TURN LEFT", "TURN RIGHT", "GO ON", "STOP HERE"]


def librispeech(root: Path) -> Path:
    """``root/LibriSpeech/{train-clean-5,dev-clean-2}/<speaker>/<chapter>/`` with FLAC tones and trans.txt."""
    for part, speakers in (("train-clean-5", ("19", "26")), ("dev-clean-2", ("84",))):
        for spk in speakers:
            chapter = root / "LibriSpeech" / part / spk / "198"
            lines = []
            for u, text in enumerate(WORDS if part.startswith("train") else WORDS[:3]):
                uid = f"{spk}-198-{u:04d}"
                write(chapter / f"{uid}.flac", tone(0.3 + 0.05 * u, freq=180 + 40 * u + int(spk)), fmt="FLAC")
                lines.append(f"{uid} {text}")
            (chapter / f"{spk}-198.trans.txt").write_text("\n".join(lines) + "\n")
    return root / "LibriSpeech"


@pytest.mark.integration
def test_a_run_trains_on_a_corpus_prepared_by_a_lhotse_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path / "cache"))
    corpus = librispeech(tmp_path)
    q = {"name": "quartznet", "preset": "5x1", "size": "tiny", "width": 0.25}
    spec = {"name": "lhotse_e2e", "seed": 0, "output_dir": str(tmp_path / "runs"), "task": {"name": "ctc"},
            "data": {"name": "lhotse", "frontend": "nemo_ctc", "num_buckets": 2,
                     "recipe": {"name": "librispeech", "corpus_dir": str(corpus),
                                "parts": {"train": "train-clean-5", "valid": "dev-clean-2"}}},
            "student": q, "trainer": {"progress_bar": False, "threads": 1},
            "evaluate": {"split": "valid", "models": ["student"]},
            "stages": [{"name": "train", "train": ["student"], "steps": 3, "batch_size": 4,
                        "optimizer": {"name": "adamw", "lr": 0.01}}]}
    code, err = cli(capsys, "run", write_spec(tmp_path / "spec.yaml", spec))
    assert code == 0, err
    [metrics_file] = (tmp_path / "runs").rglob("metrics.jsonl")
    metrics = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss/task" in m] == [1, 2, 3]
    manifests = sorted(p.name for p in (tmp_path / "cache" / "lhotse").glob("librispeech-*/*.jsonl.gz"))
    assert manifests == ["librispeech_recordings_dev-clean-2.jsonl.gz",
                         "librispeech_recordings_train-clean-5.jsonl.gz",
                         "librispeech_supervisions_dev-clean-2.jsonl.gz",
                         "librispeech_supervisions_train-clean-5.jsonl.gz"]


def test_a_recipe_part_it_does_not_give_is_one_error(tmp_path: Path) -> None:
    from compressor.core.errors import UserError
    from compressor.data.datasets import LhotseArgs, build_lhotse

    corpus = librispeech(tmp_path)
    args = LhotseArgs(recipe={"name": "librispeech", "corpus_dir": str(corpus), "args": {"dataset_parts": "auto"},
                              "parts": {"train": "train-clean-5", "valid": "dev-clean"}})
    with pytest.raises(UserError, match=r"parts\.valid: the 'librispeech' recipe has no part 'dev-clean' "
                                        r"\(it gave dev-clean-2, train-clean-5\)"):
        build_lhotse(args, cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="lhotse has no recipe 'nope'"):
        build_lhotse(LhotseArgs(recipe={"name": "nope", "corpus_dir": str(corpus), "parts": {"valid": "x"}}),
                     cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="takes no argument"):
        build_lhotse(LhotseArgs(recipe={"name": "librispeech", "corpus_dir": str(corpus), "args": {"bad": 1},
                                        "parts": {"valid": "x"}}), cache_dir=tmp_path / "cache")
