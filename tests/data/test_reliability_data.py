"""Reliability: hostile manifests and paths. Symlink loops, unreadable paths, non-UTF-8 lines, null or
non-string transcripts and non-finite numbers are skipped and listed (or stop under ``strict`` naming file and
line); a manifest that cannot be read at all stops with one line before any run directory exists."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support import write_spec
from support.reliability import cli, one_line, tiny

from compressor.core.errors import UserError
from compressor.data.datasets import (
    FscArgs,
    LibriSpeechArgs,
    NemoManifestArgs,
    build_fsc,
    build_librispeech,
    build_nemo_manifest,
)


def _wav(path: Path, seconds: float = 0.6, freq: float = 440.0) -> Path:
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * math.pi * freq * t)).astype(np.float32), 16000, subtype="PCM_16")
    return path


def _line(audio: object, text: object = "go home", duration: object = 0.6, **extra: object) -> str:
    return json.dumps({"audio_filepath": audio, "text": text, "duration": duration, **extra})


#: (manifest line, reason it is skipped for); the good lines around them must survive
BAD_LINES = {
    "text null": (_line("good.wav", None), "bad_text"),
    "text number": (_line("good.wav", 5), "bad_text"),
    "text list": (_line("good.wav", ["go", "home"]), "bad_text"),
    "text object": (_line("good.wav", {"words": "go"}), "bad_text"),
    "path null": (_line(None), "bad_line"),
    "path empty": (_line(""), "bad_line"),
    "path number": (_line(7), "bad_line"),
    "duration NaN": (_line("good.wav", duration=float("nan")), "bad_line"),
    "duration Infinity": ('{"audio_filepath": "good.wav", "text": "go", "duration": Infinity}', "bad_line"),
    "duration huge": (_line("good.wav", duration="1e999"), "bad_line"),
    "duration negative": (_line("good.wav", duration=-1), "bad_line"),
    "duration bool": (_line("good.wav", duration=True), "bad_line"),
    "offset negative": (_line("good.wav", offset=-2), "bad_line"),
    "5000 digits": ('{"audio_filepath": "good.wav", "text": "go", "duration": ' + "9" * 5000 + "}", "bad_line"),
    "nested 100k": ("[" * 100_000 + "]" * 100_000, "bad_line"),
    "not UTF-8": (b'{"audio_filepath": "good.wav", "text": "caf\xe9", "duration": 0.6}', "bad_line"),
    "symlink loop": (_line("loop.wav"), "unreadable"),
    "a directory": (_line("folder"), "unreadable"),
    "loop in folder": (_line("loopdir/x.wav"), "unreadable"),
}


def _manifest(tmp_path: Path, bad: list[str | bytes]) -> Path:
    _wav(tmp_path / "good.wav")
    (tmp_path / "loop.wav").symlink_to(tmp_path / "loop.wav")
    (tmp_path / "loopdir").symlink_to(tmp_path / "loopdir")
    (tmp_path / "folder").mkdir()
    lines = [_line("good.wav").encode(), *[b if isinstance(b, bytes) else b.encode() for b in bad],
             _line("good.wav", "go to the kitchen").encode()]
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_lines_are_skipped_and_listed(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [line for line, _ in BAD_LINES.values()])
    dm = build_nemo_manifest(NemoManifestArgs(train=str(path), valid=str(path)), cache_dir=tmp_path / "cache")
    assert len(dm.dataset("train")) == 2, dm.skipped
    train = [s for s in dm.skipped if s["split"] == "train"]
    assert [s["reason"] for s in train] == [reason for _, reason in BAD_LINES.values()], train
    # every skip names the manifest line it came from
    assert [s["source"] for s in train] == [f"{path}:{i}" for i in range(2, 2 + len(BAD_LINES))]
    texts = {dm.dataset("train").utts[i].text for i in range(2)}
    assert texts == {"go home", "go to the kitchen"}  # nothing became the transcript "none"


@pytest.mark.parametrize("case", ["text null", "duration NaN", "not UTF-8", "symlink loop", "nested 100k"])
def test_strict_stops_naming_file_and_line(tmp_path: Path, case: str) -> None:
    path = _manifest(tmp_path, [BAD_LINES[case][0]])
    with pytest.raises(UserError, match=r"train\.jsonl:2: "):
        build_nemo_manifest(NemoManifestArgs(train=str(path), valid=str(path), strict=True),
                            cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("make", ["loop", "directory", "dangling"])
def test_an_unreadable_manifest_stops_the_run_before_it_starts(tmp_path: Path, capsys, strict: bool,
                                                               make: str) -> None:
    good = _manifest(tmp_path, [])
    bad = tmp_path / "bad.jsonl"
    if make == "loop":
        bad.symlink_to(bad)
    elif make == "directory":
        bad.mkdir()
    else:
        bad.symlink_to(tmp_path / "nowhere.jsonl")
    spec = tiny(tmp_path, data={"name": "nemo_manifest", "train": [str(good), str(bad)], "valid": str(good),
                                "test": str(good), "strict": strict})
    code, err = cli(capsys, "run", write_spec(tmp_path / "spec.yaml", spec))
    line = one_line(err)
    assert code == 2 and "bad.jsonl" in line, line
    assert not (tmp_path / "runs").exists()


def test_librispeech_transcript_symlink_loop_is_one_clear_error(tmp_path: Path) -> None:
    """lhotse's recipe reads every transcript file: one it cannot open stops the preparation with one error."""
    chapter = tmp_path / "train" / "19" / "198"
    chapter.mkdir(parents=True)
    sf.write(str(chapter / "19-198-0001.flac"), np.zeros(9600, dtype=np.float32) + 0.1, 16000)
    (chapter / "19-198.trans.txt").write_text("19-198-0001 GO HOME\n")
    looped = tmp_path / "train" / "20" / "1"
    looped.mkdir(parents=True)
    (looped / "20-1.trans.txt").symlink_to(looped / "20-1.trans.txt")
    args = LibriSpeechArgs(train=str(tmp_path / "train"), valid=str(tmp_path / "train"))
    with pytest.raises(UserError, match=r"lhotse recipe 'librispeech' cannot prepare .*20-1\.trans\.txt"):
        build_librispeech(args, cache_dir=tmp_path / "cache")


def test_a_csv_that_is_not_text_is_one_clear_error(tmp_path: Path) -> None:
    csv = tmp_path / "data" / "train_data.csv"
    csv.parent.mkdir()
    csv.write_bytes(b"path,speakerId,transcription,action,object,location\n\xff\xfe\x00binary")
    with pytest.raises(UserError, match=r"train_data\.csv: not a UTF-8 text file"):
        build_fsc(FscArgs(train=str(csv), valid=str(csv)), cache_dir=tmp_path / "cache")
