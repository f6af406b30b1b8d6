"""Synthetic corpora (determinism, cache, speaker-disjoint splits), batching (bucketing, frame budget,
determinism, resume), subsets, augmentation, registry entries and the ``compressor data`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support import audio_digest

from compressor.cli.data import main as data_main
from compressor.core.errors import UserError
from compressor.corpora.build import build_corpus
from compressor.corpora.corpus import CorpusSettings, split_speakers
from compressor.corpora.datasets import (
    CommandsArgs,
    ReadSpeechArgs,
    ShiftedArgs,
    build_commands,
    build_read_speech,
    build_shifted,
    commands_info,
)
from compressor.corpora.synth import Voice
from compressor.data.augment import AugmentArgs, augment
from compressor.data.speech_args import SubsetArgs, draw_subset

torch.set_num_threads(1)
TINY = {"train_size": 48, "valid_size": 12, "test_size": 12, "num_speakers": 15}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def commands(cache: Path):
    return build_commands(CommandsArgs(**TINY), cache_dir=cache, seed=0)


def test_corpus_is_deterministic_and_cached(tmp_path: Path) -> None:
    s = CorpusSettings(
        kind="read_speech", language="de", train_size=20, valid_size=6, test_size=6, num_speakers=15
    )
    a = build_corpus(s, tmp_path / "a", workers=2)
    b = build_corpus(s, tmp_path / "b", workers=1)
    # 20 + 6 + 6 + 6: test_seen (training voices) has test_size utterances unless set
    assert audio_digest(a) == audio_digest(b) and len(list(a.rglob("*.flac"))) == 38
    stamp = (a / "DONE").stat().st_mtime_ns
    assert build_corpus(s, tmp_path / "a") == a and (a / "DONE").stat().st_mtime_ns == stamp  # reused
    other = CorpusSettings(**{**s.__dict__, "seed": 1})
    assert other.key() != s.key()


def test_every_voice_of_every_pool_exists() -> None:
    from compressor.corpora.synth import synthesize
    from compressor.corpora.voices import voice_sets

    voices = set()
    for kind, lang, cond in [("read_speech", lang, "clean") for lang in ("en", "de", "es", "ru")] + [
        ("shifted", "en", c) for c in ("accent", "domain", "variant")
    ]:
        for vs in voice_sets(kind, lang, cond).values():
            voices |= {(name, variant) for name in vs.names for variant in vs.variants}
    for name, variant in sorted(voices):  # the parent may synthesise: corpora fork from a clean fork server
        audio, sr = synthesize("a", Voice(name, variant))
        assert sr == 22050 and audio.size > 0, (name, variant)


def test_speakers_are_disjoint_across_splits() -> None:
    # (variants, not only speakers, are held out: tests/corpora/test_data_corpus_plan.py)
    for kind, cond in (
        ("read_speech", "clean"),
        ("shifted", "accent"),
        ("shifted", "variant"),
        ("commands", "clean"),
    ):
        sp = split_speakers(CorpusSettings(kind=kind, condition=cond))
        ids = {k: {v.speaker_id for v in vs} for k, vs in sp.items()}
        assert (
            not (ids["train"] & ids["valid"])
            and not (ids["train"] & ids["test"])
            and not (ids["valid"] & ids["test"])
        )
        assert ids["test_seen"] == ids["train"]
        assert all(ids.values())


def test_commands_corpus(commands) -> None:
    dm = commands
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 48, "valid": 12, "test": 12, "test_seen": 12}
    assert dm.info["num_classes"] == 31 and dm.info["labels"] == commands_info(CommandsArgs())["labels"]
    assert dm.info["vocab_size"] == commands_info(CommandsArgs())["vocab_size"] == 29
    assert dm.info["tokens"][-1] == "<blk>" and len(dm.info["feature_mean"]) == 80
    lines = Path(dm.info["tokens_file"]).read_text(encoding="utf-8").splitlines()
    assert lines[-1] == f"<blk> {dm.info['vocab_size'] - 1}" and lines[0] == "\u2581 0"
    batch = dm.collate([dm.dataset("train")[i] for i in range(5)])
    assert batch["features"].shape[0] == 5 and batch["label"].shape == (5,)
    assert (
        batch["tokens"].dtype == torch.int64 and int(batch["token_lengths"].max()) == batch["tokens"].shape[1]
    )
    for i in range(5):  # tokens decode back to the transcript
        ids = batch["tokens"][i, : batch["token_lengths"][i]].tolist()
        assert dm.tokenizer.decode(ids) == batch["text"][i]
    utt = dm.dataset("train").utts[0]
    labels = dm.info["slot_labels"]
    item = dm.dataset("train")[0]
    assert labels["action"][item["action"]] == utt.labels["action"]


def test_corpus_is_also_lhotse_cuts(commands) -> None:
    """Beside its NeMo manifests a corpus holds lhotse cuts (speakers and labels included) for icefall or NeMo,
    written outside its checksums: the corpus is reused as it was."""
    from lhotse import CutSet

    from compressor.corpora.build import verify_corpus

    root = Path(commands.info["corpus_dir"])
    cuts = CutSet.from_file(root / "cuts_train.jsonl.gz")
    utts = commands.dataset("train").utts
    assert len(cuts) == 48 and [c.id for c in cuts] == [u.id for u in utts]
    sup = cuts[0].supervisions[0]
    assert (sup.text, sup.speaker, sup.custom["intent"], sup.custom["slots"]["action"]) == (
        utts[0].text, utts[0].speaker, utts[0].labels["intent"], utts[0].labels["action"])
    assert sorted(p.name for p in root.glob("cuts_*.jsonl.gz")) == [
        "cuts_test.jsonl.gz", "cuts_test_seen.jsonl.gz", "cuts_train.jsonl.gz", "cuts_valid.jsonl.gz"]
    settings = json.loads((root / "settings.json").read_text())
    assert verify_corpus(root, CorpusSettings(**settings)) is None


def test_batches_bucketing_determinism_and_resume(commands) -> None:
    dm = commands
    assert dm.sampler == "length_buckets"  # the default outside the lhotse dataset
    dm.sampler = "lhotse"
    a = dm.batches("train", 8, shuffle=True, seed=3, epoch=1)
    assert a == dm.batches("train", 8, shuffle=True, seed=3, epoch=1)
    assert a != dm.batches("train", 8, shuffle=True, seed=3, epoch=2)
    flat = [i for b in a for i in b]
    assert len(flat) == len(set(flat)) == 48  # every utterance once (48 = 6 full batches, no remainder)
    assert dm.sampler == "lhotse" and max(len(b) for b in a) == 8
    for size in (10, 20):  # lhotse's sampler keeps every utterance, its buckets' remainders included
        assert sorted(i for b in dm.batches("train", size, shuffle=True, seed=3, epoch=1) for i in b) == list(
            range(48))
    dm.sampler = "length_buckets"
    try:
        b5 = dm.batches("train", 10, shuffle=True, seed=3, epoch=1)  # 48 = 4 x 10 + 8: the 8 are kept
        assert sorted(len(b) for b in b5) == [8, 10, 10, 10, 10]
        b7 = dm.batches("train", 20, shuffle=True, seed=3, epoch=1)  # 48 = 2 x 20 + 8: the short 8 dropped
        assert sorted(len(b) for b in b7) == [20, 20]
        assert dm.num_batches("train", 20, shuffle=True, seed=3, epoch=1) == 2
    finally:
        dm.sampler = "lhotse"
    lengths = dm.dataset("train").lengths
    dm.max_frames = 2 * max(lengths)
    try:
        b = dm.batches("train", 8, shuffle=True, seed=0, epoch=0)
        assert all(len(x) == 1 or max(lengths[i] for i in x) * len(x) <= dm.max_frames for x in b)
        # resume: skipping k batches yields exactly the rest of the epoch
        full = [batch["ids"] for batch in dm.loader("train", 8, shuffle=True, seed=0, epoch=0)]
        rest = [batch["ids"] for batch in dm.loader("train", 8, shuffle=True, seed=0, epoch=0, skip=2)]
        assert rest == full[2:]
        # creating a loader must not draw from the global RNG: a resumed run creates its loader at another
        # point of the RNG stream than the original did, and dropout would then draw other masks
        state = torch.get_rng_state()
        next(iter(dm.loader("train", 8, shuffle=True, seed=0, epoch=0, skip=1)))
        assert torch.equal(state, torch.get_rng_state())
    finally:
        dm.max_frames = None
        dm.sampler = "length_buckets"
    ev = dm.batches("valid", 4, shuffle=False, seed=0, epoch=0)
    vl = [dm.dataset("valid").lengths[i] for b in ev for i in b]
    assert vl == sorted(vl)


def test_subsets_are_disjoint(commands, cache: Path) -> None:
    parts = [set(draw_subset(100, SubsetArgs(fraction=0.1, count=10, index=k))) for k in range(10)]
    assert all(len(p) == 10 for p in parts) and len(set().union(*parts)) == 100
    with pytest.raises(UserError, match="disjoint"):
        draw_subset(10, SubsetArgs(fraction=0.5, count=3, index=0))
    dm = build_commands(
        CommandsArgs(**TINY, subset={"fraction": 0.25, "count": 4, "index": 1}), cache_dir=cache
    )
    assert len(dm.dataset("train")) == 12


def test_augmentation_is_deterministic_and_changes_audio() -> None:
    wave = torch.sin(torch.arange(16000) / 10.0) * 0.3
    args = AugmentArgs(noise_snr=(5, 10), speeds=[0.9, 1.1], reverb=1.0)
    a, b, c = augment(wave, args, 7), augment(wave, args, 7), augment(wave, args, 8)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.abs().max() <= 1
    assert a.numel() != wave.numel()  # speed perturbation changes the length


def test_augmented_training_split(cache: Path) -> None:
    dm = build_commands(CommandsArgs(**TINY, augment={"noise_snr": [10, 20]}), cache_dir=cache)
    train = dm.dataset("train")
    dm.batches("train", 4, shuffle=True, seed=0, epoch=0)
    x0 = train[0]["features"]
    assert torch.equal(x0, train[0]["features"])  # same epoch, same audio
    dm.batches("train", 4, shuffle=True, seed=0, epoch=1)
    assert not torch.equal(x0, train[0]["features"])  # a new epoch draws new noise
    assert torch.equal(dm.dataset("valid")[0]["features"], dm.dataset("valid").features[0])  # eval is clean
    # a loader is bound to its epoch: later batches() calls (other epochs) do not change what it yields
    loader = dm.loader("train", 4, shuffle=True, seed=0, epoch=0, num_workers=1)
    dm.batches("train", 4, shuffle=True, seed=0, epoch=5)
    first = next(iter(loader))
    dm.batches("train", 4, shuffle=True, seed=0, epoch=0)
    again = next(iter(dm.loader("train", 4, shuffle=True, seed=0, epoch=0)))
    assert first["ids"] == again["ids"] and torch.equal(first["features"], again["features"])


def test_per_feature_normalization_option(commands, cache: Path) -> None:
    dm = build_commands(CommandsArgs(**TINY, normalize="per_feature"), cache_dir=cache)
    x = dm.dataset("train")[0]["features"]
    assert x.mean(0).abs().max() < 1e-4 and (x.std(0, unbiased=False) - 1).abs().max() < 1e-2
    assert dm.info["normalize_type"] == "per_feature" and commands.info["normalize_type"] == ""
    assert abs(sum(dm.info["feature_mean"]) / 80) < 1e-3


def test_read_speech_languages_and_shifted(cache: Path) -> None:
    dm = build_read_speech(
        ReadSpeechArgs(**TINY, language="ru", tokenizer="sentencepiece", vocab_size=40), cache_dir=cache
    )
    assert dm.info["vocab_size"] == 40 and dm.info["blank_id"] == 39 and dm.info["tokens"][-1] == "<blk>"
    assert all(any("\u0430" <= ch <= "\u044f" for ch in u.text) for u in dm.dataset("train").utts)
    assert Path(dm.info["bpe_model"]).exists()
    sh = build_shifted(ShiftedArgs(**TINY, condition="domain"), cache_dir=cache)
    words = {w for u in sh.dataset("train").utts for w in u.text.split()}
    assert words & {"savings", "stock", "transfer", "interest", "dividend", "deposit", "balance"}


def test_registry_and_cli(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from compressor.plugins import get_registry

    reg = get_registry()
    for name in ("commands", "read_speech", "shifted", "nemo_manifest", "fsc", "librispeech", "common_voice"):
        assert reg.has("dataset", name)
    info = reg.get("dataset", "read_speech").extra["info"](
        reg.parse_args("dataset", "read_speech", {"language": "de"})
    )
    assert info["vocab_size"] == 33 and info["feature_dim"] == 80
    args = [
        "stats",
        "commands",
        "train_size=48",
        "valid_size=12",
        "test_size=12",
        "num_speakers=15",
        "--cache-dir",
        str(cache),
        "--json",
    ]
    assert data_main(args) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["splits"]["train"]["utterances"] == 48 and stats["num_classes"] == 31
    assert stats["splits"]["train"]["hours"] > 0 and stats["splits"]["valid"]["speakers"] >= 1
    with pytest.raises(UserError):
        data_main(["stats", "commands", "train_size=-3", "--cache-dir", str(cache)])
    with pytest.raises(UserError):
        data_main(["build", str(cache / "missing.yaml")])
