"""Real corpus layouts (NeMo JSONL, FSC CSV, LibriSpeech, Common Voice TSV) on tiny fixtures built here,
and every bad-input case: corrupt, empty, truncated, NaN audio, missing file, bad manifest line,
out-of-alphabet transcript -> skipped and counted, or a UserError naming file and line under strict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from compressor.core.errors import UserError
from compressor.data.audio import AudioError, load_audio
from compressor.data.datasets import (
    CommonVoiceArgs,
    FscArgs,
    LibriSpeechArgs,
    NemoManifestArgs,
    build_common_voice,
    build_fsc,
    build_librispeech,
    build_nemo_manifest,
)

torch.set_num_threads(1)


def tone(seconds: float = 0.5, sr: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * math.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write(
    path: Path, data: np.ndarray, sr: int = 16000, fmt: str | None = None, subtype: str = "PCM_16"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, format=fmt, subtype=subtype)
    return path


def bad_files(d: Path) -> dict[str, Path]:
    """One file per audio failure."""
    d.mkdir(parents=True, exist_ok=True)
    corrupt = d / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 3)
    empty = write(d / "empty.wav", np.zeros(0, dtype=np.float32))
    full = write(d / "full.wav", tone(1.0))
    truncated = d / "truncated.wav"
    truncated.write_bytes(full.read_bytes()[: 44 + 2000])  # header promises 16000 frames
    nan = write(d / "nan.wav", np.array([0.1, np.nan, 0.2] * 2000, dtype=np.float32), subtype="FLOAT")
    return {
        "corrupt": corrupt,
        "empty": empty,
        "truncated": truncated,
        "nan": nan,
        "missing": d / "does_not_exist.wav",
    }


# ------------------------------------------------------------------------------------------------


def test_load_audio_resamples_and_downmixes(tmp_path: Path) -> None:
    stereo = write(tmp_path / "s.wav", tone(1.0, sr=22050, channels=2), sr=22050)
    x = load_audio(stereo)
    assert x.dim() == 1 and abs(x.numel() - 16000) <= 1
    flac = write(tmp_path / "m.flac", tone(0.5, sr=8000), sr=8000)
    assert abs(load_audio(flac).numel() - 8000) <= 1


@pytest.mark.parametrize("reason", ["corrupt", "empty", "truncated", "nan", "missing"])
def test_load_audio_failures(tmp_path: Path, reason: str) -> None:
    path = bad_files(tmp_path)[reason]
    with pytest.raises(AudioError) as e:
        load_audio(path)
    assert e.value.reason == reason


def _nemo_fixture(tmp_path: Path) -> dict[str, Path]:
    audio = tmp_path / "audio"
    good = [write(audio / f"u{i}.wav", tone(0.4 + 0.1 * i, freq=300 + 50 * i)) for i in range(6)]
    bad = bad_files(tmp_path / "bad")
    train = tmp_path / "train.jsonl"
    lines = [
        json.dumps({"audio_filepath": f"audio/u{i}.wav", "duration": 0.5, "text": f"hello world {w}"})
        for i, w in enumerate(["one", "two", "three", "four"])
    ]
    lines.append("{not json")  # line 5
    lines.append(json.dumps({"audio_filepath": "audio/u4.wav", "text": "no duration"}))  # line 6
    lines.append(json.dumps({"audio_filepath": "audio/u5.wav", "duration": 0.9, "text": "Straße €"}))  # 7
    for name, path in bad.items():
        lines.append(json.dumps({"audio_filepath": str(path), "duration": 1.0, "text": f"bad {name}"}))
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    valid = tmp_path / "valid.jsonl"
    valid.write_text(
        json.dumps({"audio_filepath": str(good[5]), "duration": 0.9, "text": "Valid, Text!"}) + "\n"
    )
    return {"train": train, "valid": valid}


def test_nemo_manifest_skips_and_counts(tmp_path: Path) -> None:
    m = _nemo_fixture(tmp_path)
    dm = build_nemo_manifest(
        NemoManifestArgs(train=str(m["train"]), valid=str(m["valid"])), cache_dir=tmp_path / "cache"
    )
    assert len(dm.dataset("train")) == 4
    assert dm.dataset("valid")[0]["text"] == "valid text"
    reasons = sorted(s["reason"] for s in dm.skipped)
    assert reasons == sorted(
        ["bad_line", "missing_field", "alphabet", "corrupt", "empty", "truncated", "nan", "missing"]
    )
    sources = {s["reason"]: s["source"] for s in dm.skipped}
    assert sources["bad_line"].endswith("train.jsonl:5")
    assert sources["missing_field"].endswith("train.jsonl:6")
    assert sources["alphabet"].endswith("train.jsonl:7")
    assert dm.info["num_skipped"] == 8
    batch = next(iter(dm.loader("train", 4)))
    assert batch["features"].shape[0] == 4 and batch["features"].shape[2] == 80
    assert (batch["feature_lengths"] <= batch["features"].shape[1]).all()


@pytest.mark.parametrize("line,reason", [(5, "not valid JSON"), (6, "missing field"), (7, "alphabet")])
def test_nemo_manifest_strict_names_file_and_line(tmp_path: Path, line: int, reason: str) -> None:
    m = _nemo_fixture(tmp_path)
    lines = m["train"].read_text().splitlines()
    keep = lines[:4] + [lines[line - 1]]
    m["train"].write_text("\n".join(keep) + "\n")
    with pytest.raises(UserError, match=rf"train\.jsonl:5: .*{reason}"):
        build_nemo_manifest(
            NemoManifestArgs(train=str(m["train"]), valid=str(m["valid"]), strict=True),
            cache_dir=tmp_path / "cache",
        )


@pytest.mark.parametrize("bad", ["corrupt", "empty", "truncated", "nan", "missing"])
def test_strict_bad_audio_names_file_and_line(tmp_path: Path, bad: str) -> None:
    m = _nemo_fixture(tmp_path)
    lines = m["train"].read_text().splitlines()
    bad_line = next(ln for ln in lines if f'"bad {bad}"' in ln)
    m["train"].write_text("\n".join(lines[:4] + [bad_line]) + "\n")
    with pytest.raises(UserError, match=r"train\.jsonl:5: "):
        build_nemo_manifest(
            NemoManifestArgs(train=str(m["train"]), valid=str(m["valid"]), strict=True),
            cache_dir=tmp_path / "cache",
        )


def test_missing_manifest_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        build_nemo_manifest(
            NemoManifestArgs(train=str(tmp_path / "nope.jsonl"), valid=str(tmp_path / "v.jsonl"))
        )


def test_fsc_csv_layout(tmp_path: Path) -> None:
    root = tmp_path / "fluent_speech_commands_dataset"
    header = ",path,speakerId,transcription,action,object,location\n"
    rows = {
        "train": [
            ("spk1", "Turn on the lights", "activate", "lights", "none"),
            ("spk1", "Bring me my shoes", "bring", "shoes", "none"),
            ("spk2", "Heat up the kitchen", "increase", "heat", "kitchen"),
            ("spk2", "", "increase", "heat", "none"),
        ],  # empty transcription: skipped
        "valid": [("spk3", "Lights off", "deactivate", "lights", "none")],
    }
    for split, items in rows.items():
        lines = [header.strip()]
        for i, (spk, text, a, o, loc) in enumerate(items):
            rel = f"wavs/speakers/{spk}/{split}{i}.wav"
            write(root / rel, tone(0.6, freq=200 + 100 * i))
            lines.append(f"{i},{rel},{spk},{text},{a},{o},{loc}")
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "data" / f"{split}_data.csv").write_text("\n".join(lines) + "\n")
    dm = build_fsc(
        FscArgs(train=str(root / "data/train_data.csv"), valid=str(root / "data/valid_data.csv")),
        cache_dir=tmp_path / "cache",
    )
    assert len(dm.dataset("train")) == 3 and len(dm.skipped) == 1
    assert dm.skipped[0]["source"].endswith("train_data.csv:5")
    batch = dm.collate([dm.dataset("train")[i] for i in range(3)])
    assert set(batch) >= {"label", "action", "object", "location", "tokens", "token_lengths"}
    assert dm.info["num_classes"] == 4  # intents seen in train + valid
    assert dm.info["slot_labels"]["location"] == ["kitchen", "none"]
    assert list(dm.info["slot_labels"]) == ["action", "object", "location"]  # the FSC columns' order
    bad = root / "data" / "bad.csv"
    bad.write_text("path,speakerId,transcription\nx.wav,s,hi\n")
    with pytest.raises(UserError, match="lacks column"):
        build_fsc(FscArgs(train=str(bad), valid=str(bad)), cache_dir=tmp_path / "cache")


def test_librispeech_layout(tmp_path: Path) -> None:
    """LibriSpeech folders come through lhotse's recipe; its manifests are cached; a line it cannot parse is one
    error naming the recipe and the corpus folder."""
    for split, spk in (("train-clean-100", "19"), ("dev-clean", "84")):
        chapter = tmp_path / "LibriSpeech" / split / spk / "198"
        lines = []
        for u in range(3):
            uid = f"{spk}-198-{u:04d}"
            write(chapter / f"{uid}.flac", tone(0.5 + 0.1 * u, freq=250 + 60 * u), fmt="FLAC")
            lines.append(f"{uid} HELLO WORLD NUMBER {['ONE', 'TWO', 'THREE'][u]}")
        (chapter / f"{spk}-198.trans.txt").write_text("\n".join(lines) + "\n")
    base = tmp_path / "LibriSpeech"
    args = LibriSpeechArgs(train=str(base / "train-clean-100"), valid=str(base / "dev-clean"))
    dm = build_librispeech(args, cache_dir=tmp_path / "cache")
    assert len(dm.dataset("train")) == 3 and len(dm.dataset("valid")) == 3
    assert dm.dataset("train")[0]["text"].startswith("hello world number")
    assert dm.dataset("train").utts[0].speaker == "19" and not dm.skipped
    assert sorted(p.name for p in (tmp_path / "cache" / "lhotse").glob("*/*.jsonl.gz")) == [
        "librispeech_recordings_dev-clean.jsonl.gz", "librispeech_recordings_train-clean-100.jsonl.gz",
        "librispeech_supervisions_dev-clean.jsonl.gz", "librispeech_supervisions_train-clean-100.jsonl.gz"]
    trans = base / "train-clean-100" / "19" / "198" / "19-198.trans.txt"
    trans.write_text(trans.read_text() + "lonely-id-without-text\n")
    with pytest.raises(UserError, match=r"lhotse recipe 'librispeech' cannot prepare .*LibriSpeech"):
        build_librispeech(args, cache_dir=tmp_path / "other-cache")


def test_common_voice_tsv_layout(tmp_path: Path) -> None:
    cv = tmp_path / "cv-corpus" / "de"
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\n"
    for name, sentences in (
        ("train", ["Guten Morgen.", "Wie geht's?", "Das ist schön", "Привет"]),
        ("dev", ["Danke schön"]),
    ):
        lines = []
        for i, text in enumerate(sentences):
            if i == 0:  # Common Voice ships MP3 clips (48 kHz)
                clip = f"common_voice_de_{name}{i}.mp3"
                write(cv / "clips" / clip, tone(0.5, sr=48000), sr=48000, fmt="MP3", subtype="MPEG_LAYER_III")
            else:
                clip = f"common_voice_de_{name}{i}.wav"
                write(cv / "clips" / clip, tone(0.5, sr=48000, freq=300 + 40 * i), sr=48000)
            lines.append(f"client{i % 2}\t{clip}\t{text}\t2\t0\t\t\t")
        (cv / f"{name}.tsv").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    dm = build_common_voice(
        CommonVoiceArgs(train=str(cv / "train.tsv"), valid=str(cv / "dev.tsv"), language="de"),
        cache_dir=tmp_path / "cache",
    )
    assert [dm.dataset("train")[i]["text"] for i in range(3)] == [
        "guten morgen",
        "wie geht's",
        "das ist schön",
    ]
    assert dm.skipped[0]["reason"] == "alphabet" and dm.skipped[0]["source"].endswith("train.tsv:5")
    assert dm.info["tokens"][-1] == "<blk>" and dm.info["blank_id"] == dm.info["vocab_size"] - 1
