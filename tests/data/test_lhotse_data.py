"""The lhotse data layer: users' lhotse manifests (cuts, or recordings + supervisions) and recipes read into the
speech data module, with their labels; bad manifests are one error naming the file; corpora written back out as
lhotse cuts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

from compressor.core.errors import UserError
from compressor.data.datasets import LhotseArgs, build_lhotse
from compressor.data.lhotse_io import to_cuts
from tests.data.test_data_formats import tone, write

INTENTS = [("turn on the lights", "activate", "lights", "none"), ("bring me my shoes", "bring", "shoes", "none"),
           ("heat up the kitchen", "increase", "heat", "kitchen"), ("lights off", "deactivate", "lights", "none")]


def manifests(root: Path, split: str, n: int) -> tuple[Path, Path]:
    """A recordings and a supervisions manifest of ``n`` short tones with transcripts, speakers and SLU labels."""
    recs, sups = [], []
    for i in range(n):
        text, action, obj, loc = INTENTS[i % len(INTENTS)]
        path = write(root / "audio" / f"{split}{i}.wav", tone(0.4 + 0.1 * i, freq=200 + 50 * i))
        rec = Recording.from_file(path, recording_id=f"{split}{i}")
        recs.append(rec)
        sups.append(SupervisionSegment(id=f"{split}{i}", recording_id=rec.id, start=0.0, duration=rec.duration,
                                       text=text, speaker=f"spk{i % 2}",
                                       custom={"intent": f"{action}_{obj}_{loc}",
                                               "slots": {"action": action, "object": obj, "location": loc}}))
    r, s = root / f"recordings_{split}.jsonl.gz", root / f"supervisions_{split}.jsonl.gz"
    RecordingSet.from_recordings(recs).to_file(r)
    SupervisionSet.from_segments(sups).to_file(s)
    return r, s


def test_recordings_and_supervisions_with_labels(tmp_path: Path) -> None:
    (rt, st), (rv, sv) = manifests(tmp_path, "train", 4), manifests(tmp_path, "valid", 2)
    dm = build_lhotse(LhotseArgs(recordings={"train": str(rt), "valid": str(rv)},
                                 supervisions={"train": str(st), "valid": str(sv)}), cache_dir=tmp_path / "cache")
    assert len(dm.dataset("train")) == 4 and len(dm.dataset("valid")) == 2
    assert dm.dataset("train").utts[1].speaker == "spk1"
    assert dm.info["num_classes"] == 4 and list(dm.info["slot_labels"]) == ["action", "object", "location"]
    batch = dm.collate([dm.dataset("train")[i] for i in range(4)])
    assert set(batch) >= {"label", "action", "object", "location"}


def test_cuts_manifests_and_the_way_back(tmp_path: Path) -> None:
    (rt, st), (rv, sv) = manifests(tmp_path, "train", 3), manifests(tmp_path, "valid", 2)
    for split, r, s in (("train", rt, st), ("valid", rv, sv)):
        CutSet.from_manifests(recordings=RecordingSet.from_file(r), supervisions=SupervisionSet.from_file(s)
                              ).to_file(tmp_path / f"cuts_{split}.jsonl.gz")
    dm = build_lhotse(LhotseArgs(cuts={"train": str(tmp_path / "cuts_train.jsonl.gz"),
                                       "valid": str(tmp_path / "cuts_valid.jsonl.gz")}), cache_dir=tmp_path / "c")
    utts = dm.dataset("train").utts
    assert [u.text for u in utts] == [t for t, *_ in INTENTS[:3]]
    back = list(to_cuts(utts))  # the same labels, as lhotse carries them
    assert back[2].supervisions[0].custom == {"intent": "increase_heat_kitchen",
                                              "slots": {"action": "increase", "object": "heat",
                                                        "location": "kitchen"}}
    assert back[2].supervisions[0].speaker == "spk0" and back[2].recording.sources[0].source == str(utts[2].audio)


@pytest.mark.parametrize("make,match", [
    ("missing", r"lhotse cuts manifest not found: .*nope\.jsonl\.gz"),
    ("garbage", r"bad\.jsonl\.gz: not a lhotse cuts manifest"),
    ("not json", r"bad\.jsonl: not a lhotse cuts manifest"),
    ("recordings", r"recordings_train\.jsonl\.gz: a lhotse cuts manifest was expected, this holds a RecordingSet"),
])
def test_bad_cuts_manifest_is_one_error_naming_it(tmp_path: Path, make: str, match: str) -> None:
    rt, _ = manifests(tmp_path, "train", 1)
    path = {"missing": tmp_path / "nope.jsonl.gz", "garbage": tmp_path / "bad.jsonl.gz",
            "not json": tmp_path / "bad.jsonl", "recordings": rt}[make]
    if make == "garbage":
        path.write_bytes(b"\x1f\x8b\x08 not really gzip")
    elif make == "not json":
        path.write_text('{"id": "x", "start": 0\nnot json\n')
    with pytest.raises(UserError, match=match):
        build_lhotse(LhotseArgs(cuts={"train": str(path), "valid": str(path)}), cache_dir=tmp_path / "cache")


def test_supervisions_of_unknown_recordings_are_an_error(tmp_path: Path) -> None:
    (rt, st), (rv, _) = manifests(tmp_path, "train", 2), manifests(tmp_path, "valid", 1)
    with pytest.raises(UserError, match=r"supervisions_train\.jsonl\.gz: 2 supervision\(s\) name recordings"):
        build_lhotse(LhotseArgs(recordings={"train": str(rv), "valid": str(rv)},
                                supervisions={"train": str(st), "valid": str(st)}), cache_dir=tmp_path / "cache")
    with gzip.open(rt, "rt") as f:
        assert json.loads(f.readline())["id"] == "train0"


def test_args_name_one_source_and_a_valid_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        LhotseArgs(cuts={"train": "a", "valid": "b"}, recordings={"train": "a", "valid": "b"},
                   supervisions={"train": "a", "valid": "b"})
    with pytest.raises(ValueError, match="'valid' split"):
        LhotseArgs(cuts={"train": "a"})
    with pytest.raises(ValueError, match="go together"):
        LhotseArgs(recordings={"train": "a", "valid": "b"})


def test_lhotse_sampler_batches_are_deterministic_and_resume_mid_epoch(tmp_path: Path) -> None:
    (rt, st), (rv, sv) = manifests(tmp_path, "train", 12), manifests(tmp_path, "valid", 2)
    dm = build_lhotse(LhotseArgs(recordings={"train": str(rt), "valid": str(rv)}, num_buckets=3,
                                 supervisions={"train": str(st), "valid": str(sv)}), cache_dir=tmp_path / "cache")
    assert dm.sampler == "lhotse"
    a = dm.batches("train", 4, shuffle=True, seed=1, epoch=2)
    assert a == dm.batches("train", 4, shuffle=True, seed=1, epoch=2)  # again: the same (memo or not)
    dm._memo = None
    assert a == dm.batches("train", 4, shuffle=True, seed=1, epoch=2)
    assert sorted(i for b in a for i in b) == list(range(12)) and max(map(len, a)) <= 4
    others = [dm.batches("train", 4, shuffle=True, seed=s, epoch=e) for s, e in ((1, 3), (2, 2), (2, 1))]
    assert all(o != a for o in others)  # (seed, epoch) pairs are not interchangeable
    assert dm.num_batches("train", 4, shuffle=True, seed=1, epoch=2) == len(a)
    full = [b["ids"] for b in dm.loader("train", 4, shuffle=True, seed=1, epoch=2)]
    rest = [b["ids"] for b in dm.loader("train", 4, shuffle=True, seed=1, epoch=2, skip=2)]
    assert rest == full[2:] and len(full) == len(a)
