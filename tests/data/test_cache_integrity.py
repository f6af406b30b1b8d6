"""Caches prove their integrity: a tampered, forged or malformed entry is rebuilt with one line said, never
used (teacher outputs, fbank features, synthesised corpora)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from support import write_spec
from support.reliability import tiny

from compressor.cli import main


def _cached_spec(tmp_path: Path, shared: Path, out: str, teacher_epochs: int = 2) -> dict:
    spec = tiny(tmp_path)
    spec["output_dir"] = str(tmp_path / out)
    spec["stages"][0]["epochs"] = teacher_epochs
    spec["stages"][1]["plugins"][0].update(cache=True, cache_dir=str(shared))
    return spec


def _run(capsys, spec: dict, path: Path) -> tuple[Path, str]:
    capsys.readouterr()
    code = main(["run", str(write_spec(path, spec))])
    out, err = capsys.readouterr()
    assert code == 0, err
    (run_dir,) = Path(spec["output_dir"]).glob("*/*")
    return run_dir, out + err


def _student(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "final" / "student.pt", weights_only=True)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _entries(stored: dict) -> dict:
    return stored["entries"]


def _scale(stored: dict) -> None:
    for entry in _entries(stored).values():
        for name in entry["values"]:
            entry["values"][name] = entry["values"][name] * 1.5


def _wrong_shape(stored: dict) -> None:
    entry = next(iter(_entries(stored).values()))
    for name in entry["values"]:
        entry["values"][name] = torch.zeros(3, 2, 7)


def _wrong_type(stored: dict) -> None:
    entry = next(iter(_entries(stored).values()))
    for name in entry["values"]:
        entry["values"][name] = "logits"


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A run that filled a shared teacher cache: its run dir, the cache folder, its spec's tmp folder."""
    from compressor.run.engine import run_spec

    tmp = tmp_path_factory.mktemp("clean")
    shared = tmp / "cache"
    run_dir = run_spec(write_spec(tmp / "spec.yaml", _cached_spec(tmp, shared, "first")))
    return run_dir, shared, tmp


@pytest.mark.parametrize("damage", [_scale, _wrong_shape, _wrong_type])
def test_a_tampered_teacher_cache_entry_is_recomputed_not_used(clean, tmp_path: Path, capsys, damage) -> None:
    first, shared, tmp = clean
    cache = tmp_path / "cache"
    import shutil

    shutil.copytree(shared, cache)
    (f,) = cache.iterdir()
    stored = torch.load(f, weights_only=True)
    damage(stored)
    torch.save(stored, f)
    run_dir, said = _run(capsys, _cached_spec(tmp_path, cache, "second"), tmp_path / "spec.yaml")
    assert "failed verification" in said or "recomputed" in said, said
    assert _same(_student(run_dir), _student(first))  # recomputed: the same as with the clean cache


def test_a_forged_weights_field_does_not_let_another_teacher_reuse_outputs(clean, tmp_path: Path, capsys) -> None:
    first, shared, _ = clean
    cache = tmp_path / "cache"
    # teacher B (trained one epoch) on a cache of its own: the reference, and the file name B reads
    b_spec = _cached_spec(tmp_path, cache, "b_clean", teacher_epochs=1)
    b_clean, _ = _run(capsys, b_spec, tmp_path / "b.yaml")
    (b_file,) = cache.iterdir()
    b_stored = torch.load(b_file, weights_only=True)
    # teacher A's file written under B's name, with B's weights hash forged into it
    (a_file,) = shared.iterdir()
    forged = torch.load(a_file, weights_only=True)
    if "producer" in forged:
        forged["producer"] = copy.deepcopy(b_stored["producer"])
    else:
        forged["weights"] = b_stored["weights"]
    torch.save(forged, b_file)
    again = copy.deepcopy(b_spec)
    again["output_dir"] = str(tmp_path / "b_again")
    run_dir, said = _run(capsys, again, tmp_path / "b2.yaml")
    assert "failed verification" in said, said
    assert _same(_student(run_dir), _student(b_clean))


# -- synthesised corpora ---------------------------------------------------------------------------------
def _corpus_settings():
    from compressor.corpora.corpus import CorpusSettings

    return CorpusSettings(kind="read_speech", language="de", train_size=8, valid_size=3, test_size=3,
                          num_speakers=15)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from compressor.corpora.build import build_corpus

    return build_corpus(_corpus_settings(), tmp_path_factory.mktemp("corpus"), workers=1)


def _delete_marker(root: Path) -> None:
    (root / "DONE").unlink()


def _drop_manifest_line(root: Path) -> None:
    lines = (root / "train.jsonl").read_text().splitlines(keepends=True)
    (root / "train.jsonl").write_text("".join(lines[1:]))


def _edit_transcript(root: Path) -> None:
    import json

    lines = [json.loads(x) for x in (root / "train.jsonl").read_text().splitlines()]
    lines[0]["text"] = "something else entirely"
    (root / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def _delete_audio(root: Path) -> None:
    next((root / "audio").glob("*.flac")).unlink()


@pytest.mark.parametrize("damage", [_delete_marker, _drop_manifest_line, _edit_transcript, _delete_audio])
def test_a_damaged_corpus_is_rebuilt_once_and_said(corpus: Path, tmp_path: Path, capsys, damage) -> None:
    import shutil

    from compressor.corpora.build import build_corpus

    cache = tmp_path / "cache"
    root = cache / corpus.relative_to(corpus.parent.parent)
    shutil.copytree(corpus, root)
    manifest = (corpus / "train.jsonl").read_text()
    damage(root)
    capsys.readouterr()
    assert build_corpus(_corpus_settings(), cache, workers=1) == root
    out = capsys.readouterr().out
    assert "rebuilding it" in out, out
    assert (root / "train.jsonl").read_text() == manifest and (root / "DONE").exists()
    stamp = (root / "DONE").stat().st_mtime_ns
    assert build_corpus(_corpus_settings(), cache, workers=1) == root  # now reused, not rebuilt again
    assert (root / "DONE").stat().st_mtime_ns == stamp
    assert not [p for p in root.parent.iterdir() if ".tmp" in p.name]


def test_a_killed_synthesis_leaves_nothing_for_good(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from compressor.corpora.build import build_corpus, corpus_dir

    cache = tmp_path / "cache"
    code = ("import sys; from compressor.corpora.corpus import CorpusSettings; "
            "from compressor.corpora.build import build_corpus; "
            "build_corpus(CorpusSettings(kind='read_speech', language='de', train_size=400, valid_size=3, "
            "test_size=3, num_speakers=15), sys.argv[1], workers=1)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(cache)], start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((cache / "corpora").glob("*.tmp*/audio/*.flac")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the builder and its synthesis workers
    proc.wait()
    assert list((cache / "corpora").glob("*.tmp*"))  # what a killed build leaves
    s = _corpus_settings()
    root = build_corpus(s, cache, workers=1)
    assert root == corpus_dir(s, cache)
    assert not [p.name for p in (cache / "corpora").iterdir() if ".tmp" in p.name]


# -- fbank feature cache ---------------------------------------------------------------------------------
def _utterances(tmp_path: Path) -> list:
    import math

    import soundfile as sf

    from compressor.data.utterance import Utterance

    t = torch.arange(12000) / 16000
    for i, f0 in enumerate((180.0, 240.0)):
        sf.write(str(tmp_path / f"{i}.wav"), (0.3 * torch.sin(2 * math.pi * f0 * t)).numpy(), 16000)
    return [Utterance(id=str(i), audio=tmp_path / f"{i % 2}.wav", text="a") for i in range(3)]


def _random_bytes(data: Path, index: Path) -> None:
    raw = bytearray(data.read_bytes())
    raw[400:800] = bytes(range(256)) + bytes(144)
    data.write_bytes(bytes(raw))


def _rescaled(data: Path, index: Path) -> None:
    import numpy as np

    (np.fromfile(data, dtype=np.float32) * 1.5).astype(np.float32).tofile(data)


def _shifted_lengths(data: Path, index: Path) -> None:
    import json

    meta = json.loads(index.read_text())
    meta["lengths"][0] -= 5
    meta["lengths"][1] += 5
    meta["offsets"][1] -= 5
    index.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", [_random_bytes, _rescaled, _shifted_lengths])
def test_a_damaged_feature_cache_is_rebuilt_and_said(tmp_path: Path, capsys, damage) -> None:
    from compressor.data.extract import extract_features

    utts = _utterances(tmp_path)
    first, _ = extract_features(utts, "nemo", tmp_path)
    fresh = [x.clone() for x in first]
    (data,) = (tmp_path / "features").glob("*.f32")
    damage(data, data.with_suffix(".json"))
    capsys.readouterr()
    again, _ = extract_features(utts, "nemo", tmp_path)
    out = capsys.readouterr().out
    assert "rebuilding it" in out, out
    assert again.lengths == [x.shape[0] for x in fresh]
    assert all(torch.equal(a, b) for a, b in zip(again, fresh))


def test_a_killed_feature_writer_leaves_nothing_for_good(tmp_path: Path) -> None:
    from support.reliability import dead_pid

    from compressor.data.extract import extract_features

    utts = _utterances(tmp_path)
    extract_features(utts, "nemo", tmp_path)
    (data,) = (tmp_path / "features").glob("*.f32")
    stale = data.with_name(data.name + f".tmp{dead_pid()}")
    stale.write_bytes(b"half")
    extract_features(utts, "kaldi", tmp_path)
    assert not stale.exists()


# -- k-means units -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["codebook", "producer", "bytes"])
def test_a_damaged_kmeans_units_entry_is_fitted_again(tmp_path: Path, capsys, damage: str) -> None:
    from plugins.kmeans_units import load_fit, store_fit

    producer = {"frames_sha256": "ab" * 32, "k": 4, "dim": 3}
    fit = {"mean": torch.zeros(3), "std": torch.ones(3), "codebook": torch.randn(4, 3),
           "distortion": torch.tensor(0.5), "frames": torch.tensor(100)}
    path = tmp_path / "units" / "kmeans-x.pt"
    store_fit(path, fit, producer)
    assert load_fit(path, producer) is not None
    if damage == "bytes":
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
        path.write_bytes(bytes(raw))
    else:
        stored = torch.load(path, weights_only=True)
        if damage == "codebook":
            stored["codebook"] = stored["codebook"] * 1.5
        else:  # another fit's file, its producer forged to this one's
            stored["producer"] = {**producer, "k": 4}
            stored["codebook"] = torch.randn(4, 3)
        torch.save(stored, path)
    capsys.readouterr()
    assert load_fit(path, producer) is None
    assert "fitted again" in capsys.readouterr().out
