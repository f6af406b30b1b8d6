"""Caches prove their integrity: a tampered, forged or malformed entry is rebuilt with one line said, never
used (teacher outputs, fbank features, synthesised corpora)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tests.conftest import write_spec
from compressor.cli import main
from tests.reliability import tiny


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
    from compressor.engine import run_spec

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
