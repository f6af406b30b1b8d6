"""The held-out evaluation corpus: a read-speech corpus's test sentences spoken by non-espeak synthesisers
(SVOX Pico, Hibari), built, cached, and evaluated on as a named set of a tiny run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from support import SPECS, write_spec

from compressor.core.errors import SpecError, UserError
from compressor.corpora.corpus import plan
from compressor.corpora.heldout import HeldoutArgs, base_settings, build_heldout_speech, heldout_settings
from compressor.run.engine import run_spec
from compressor.spec import load_spec

pytest.importorskip("py_nanotts", reason="the 'heldout' extra (py-nanotts) is not installed")
pytest.importorskip("hibari", reason="the 'heldout' extra (hibari-tts) is not installed")

BASE = {"train_size": 48, "valid_size": 8, "test_size": 8, "num_speakers": 6}
TINY = {"base": BASE, "sentences": 4, "voices": 2, "frontend": "nemo_ctc"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_it_speaks_the_base_test_sentences_with_each_synthesizer(cache: Path) -> None:
    args = HeldoutArgs(**TINY)
    module = build_heldout_speech(args, cache_dir=cache, seed=0)
    assert {s: len(module.dataset(s)) for s in module.datasets} == {"test": 8, "test_pico": 4, "test_hibari": 4}
    sentences = [it["text"] for it in plan(base_settings(heldout_settings(args)))["test"][:4]]
    for name in ("pico", "hibari"):
        utts = module.dataset(f"test_{name}").utts
        assert [u.text for u in utts] == sentences  # the base corpus's test split, in order
        assert len({u.speaker for u in utts}) == 2 and all(u.speaker.startswith(name) for u in utts)
    root = Path(module.info["corpus_dir"])
    for path in sorted((root / "audio").glob("*.flac")):
        audio, rate = sf.read(path)
        assert rate == 16000 and len(audio) > 8000  # half a second at least
        assert np.sqrt(np.mean(audio**2)) > 0.01 and np.abs(audio).max() < 1.0  # speech, not silence nor clipped
    assert module.info["synthesizers"] == {"pico": "0.1.1", "hibari": "0.2.1"}


def test_it_is_deterministic_and_cached(cache: Path, tmp_path: Path) -> None:
    args = HeldoutArgs(**TINY)
    a = Path(build_heldout_speech(args, cache_dir=cache).info["corpus_dir"])
    stamp = (a / "DONE").stat().st_mtime_ns
    assert Path(build_heldout_speech(args, cache_dir=cache).info["corpus_dir"]) == a
    assert (a / "DONE").stat().st_mtime_ns == stamp  # reused, not rebuilt
    b = Path(build_heldout_speech(args, cache_dir=tmp_path).info["corpus_dir"])
    for path in sorted((a / "audio").glob("*.flac")):
        assert path.read_bytes() == (b / "audio" / path.name).read_bytes()
    (a / "test_pico.jsonl").write_text("", encoding="utf-8")  # a damaged corpus is rebuilt
    build_heldout_speech(args, cache_dir=cache)
    assert (a / "DONE").stat().st_mtime_ns != stamp and (a / "test_pico.jsonl").read_text().count("\n") == 4


def spec_with_heldout(tmp_path: Path, data: dict, split: str = "test") -> Path:
    spec = yaml.safe_load((SPECS / "tiny_ctc.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    spec["stages"][0]["steps"] = 3
    spec["evaluate"]["sets"] = {"heldout": {"data": {"name": "heldout_speech", **data}, "split": split}}
    return write_spec(tmp_path / "spec.yaml", spec)


def test_a_tiny_run_evaluates_on_the_heldout_set(tmp_path: Path) -> None:
    run_dir = run_spec(spec_with_heldout(tmp_path, TINY, split="test_hibari"))
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    metrics = results["sets"]["final"]["student"]["heldout"]
    assert {"wer", "cer"} <= set(metrics) and 0.0 <= metrics["cer"]
    assert "| model | heldout wer | heldout cer |" in (run_dir / "summary.md").read_text()


def test_a_missing_synthesizer_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hibari", None)  # import hibari now raises ImportError, as when not installed
    with pytest.raises(UserError, match=r"'hibari-tts' package.*pip install \"compressor\[heldout\]\""):
        heldout_settings(HeldoutArgs(**TINY))
    heldout_settings(HeldoutArgs(**{**TINY, "synthesizers": ["pico"]}))  # pico alone needs no hibari
    with pytest.raises(SpecError, match=r"at evaluate\.sets\.heldout\.data: .*compressor\[heldout\]"):
        load_spec(spec_with_heldout(tmp_path, TINY))


@pytest.mark.parametrize("data, message", [
    ({"synthesizers": ["festival"]}, "unknown synthesizer.*festival.*available: pico, hibari"),
    ({"synthesizers": ["pico", "pico"]}, "named twice"),
    ({"base": {"language": "de"}}, "base.language"),
    ({"subset": {"size": 2}}, "subset: heldout_speech is an evaluation set"),
    ({"base": {"num_speakers": 200, "test_speakers": 100}}, "asks for 100 test speakers"),
])
def test_bad_heldout_sets_are_refused_before_any_work(tmp_path: Path, data: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec(spec_with_heldout(tmp_path, {**TINY, **data}))
