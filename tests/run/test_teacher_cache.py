"""Teacher-output caching: exact (a cached run ends bit-identical to an uncached one), read back across epochs
and runs, never reused across teachers, and refused where teacher outputs would change between epochs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from support import run_cli, text_spec, write_spec

from compressor.core.errors import SpecError
from compressor.spec import load_spec


def _kd_spec(tmp_path: Path, bert: Path, cache: bool, out: str, **extra) -> dict:
    spec = text_spec(tmp_path, bert)
    spec["output_dir"] = str(tmp_path / out)
    spec["models"] = {"professor": {"name": "hf_text_classifier", "path": str(bert), "head": "professor"}}
    distil = spec["stages"][1]  # the professor stays as initialised (seeded): enough to test the cache
    distil["frozen"] = ["teacher", "professor"]
    opts = {"cache": True, **extra} if cache else {"teacher_batching": "utterance"}
    distil["plugins"] = [
        {"name": "spec_augment", "freq_masks": 1, "freq_width": 2, "time_masks": 1, "time_width": 3},
        {"name": "logit_kd", "loss": "smooth_l1", "professor": "professor", "weight": {"name": "exp_decay"},
         "alpha": "complement", **opts},
        {"name": "representation_kd", **opts, "pairs": [
            {"name": "cls", "teacher": {"output": "cls"}, "student": {"output": "hidden"}},
            {"name": "frames", "teacher": {"output": "states"}, "student": {"module": "encoder", "index": 0},
             "align": "interpolate", "loss": "mse"}]},
    ]
    return spec


def _run(spec: dict, path: Path) -> Path:
    done = run_cli("run", str(write_spec(path, spec)))
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = Path(spec["output_dir"]).glob("*/*")
    return run_dir


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "final" / "student.pt", weights_only=True)


def _hits(run_dir: Path) -> dict[int, list[float]]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    out: dict[int, list[float]] = {}
    for r in rows:
        if r.get("stage") == "distil" and "teacher_cache_hits" in r:
            out.setdefault(r["epoch"], []).append(r["teacher_cache_hits"])
    return out


def test_cached_run_is_bit_identical_to_uncached_and_reads_back(tmp_path: Path, tiny_bert: Path) -> None:
    cached = _run(_kd_spec(tmp_path, tiny_bert, True, "cached"), tmp_path / "c.yaml")
    plain = _run(_kd_spec(tmp_path, tiny_bert, False, "plain"), tmp_path / "p.yaml")
    a, b = _weights(cached), _weights(plain)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    hits = _hits(cached)
    assert set(hits[0]) == {0.0} and set(hits[1]) == {1.0}  # computed once per utterance
    files = sorted(p.name for p in (cached / "teacher_cache").iterdir())
    assert len(files) == 3  # logit_kd: teacher and professor; representation_kd: teacher (other signature)
    assert sum(f.startswith("professor-") for f in files) == 1
    stored = torch.load(cached / "teacher_cache" / files[0], weights_only=True)
    assert len(stored["entries"]) == 48  # one entry per training utterance, keyed by id


def test_a_shared_cache_is_read_by_a_later_run_and_another_teacher_is_never_reused(tmp_path: Path,
                                                                                   tiny_bert: Path) -> None:
    shared = tmp_path / "shared_cache"
    spec = _kd_spec(tmp_path, tiny_bert, True, "first", cache_dir=str(shared))
    _run(spec, tmp_path / "a.yaml")
    again = copy.deepcopy(spec)
    again["output_dir"] = str(tmp_path / "second")
    assert set(_hits(_run(again, tmp_path / "b.yaml"))[0]) == {1.0}  # same teachers: read back from the start
    # a file under the expected name that another teacher wrote (weights hash inside differs): recomputed
    for f in shared.iterdir():
        stored = torch.load(f, weights_only=True)
        stored["producer"]["weights"] = "0" * 40
        torch.save(stored, f)
    third = copy.deepcopy(spec)
    third["output_dir"] = str(tmp_path / "third")
    run_dir = _run(third, tmp_path / "c.yaml")
    assert set(_hits(run_dir)[0]) == {0.0} and set(_hits(run_dir)[1]) == {1.0}
    assert all(torch.load(f, weights_only=True)["producer"]["weights"] != "0" * 40 for f in shared.iterdir())


def test_cache_refusals(tmp_path: Path, tiny_bert: Path, tiny_spec: dict) -> None:
    # a speech teacher whose input features SpecAugment rewrites
    tiny_spec["stages"][1]["plugins"][0]["cache"] = True
    tiny_spec["stages"][1]["plugins"].insert(0, {"name": "spec_augment", "freq_width": 2, "time_width": 3})
    with pytest.raises(SpecError, match=r"plugins\[1\]\.cache: cache: true, but plugin 'spec_augment' "
                                        r"\(stages\[1\]\.plugins\[0\]\) rewrites batch key 'features' which "
                                        r"teacher 'teacher' reads"):
        load_spec(write_spec(tmp_path / "a.yaml", tiny_spec))
    # hidden masking inside the teacher
    tiny_spec["stages"][1]["plugins"][0] = {"name": "hidden_masking", "model": "teacher", "module": "encoder",
                                            "time_prob": 0.1, "time_span": 2}
    with pytest.raises(SpecError, match="perturbs the teacher 'teacher' inside"):
        load_spec(write_spec(tmp_path / "b.yaml", tiny_spec))
    tiny_spec["stages"][1]["plugins"].pop(0)
    # a teacher trained in the stage
    tiny_spec["stages"][1]["train"] = ["student", "teacher"]
    tiny_spec["stages"][1]["frozen"] = []
    with pytest.raises(SpecError, match="cache: true needs a frozen teacher, but 'teacher' is trained"):
        load_spec(write_spec(tmp_path / "c.yaml", tiny_spec))
    # token span masking of the text teacher's own tokens
    spec = _kd_spec(tmp_path, tiny_bert, True, "x")
    spec["stages"][1]["plugins"].insert(0, {"name": "token_span_masking", "model": "teacher"})
    with pytest.raises(SpecError, match="perturbs the teacher 'teacher' inside"):
        load_spec(write_spec(tmp_path / "d.yaml", spec))


def test_waveform_augmentation_refuses_a_cached_speech_teacher(tmp_path: Path) -> None:
    from support import REPO

    done = run_cli("validate", str(REPO / "specs" / "quickstart.yaml"), "--set=stages[1].plugins[0].cache=true",
                   "--set=data.augment.noise_snr=[10,20]")
    assert done.returncode == 2
    assert "the data's waveform augmentation changes the features teacher 'teacher' reads" in done.stderr
