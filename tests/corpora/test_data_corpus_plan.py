"""Corpus plans: held-out voices (valid/test variants no training speaker uses), the seen-voice test split,
and the large read-speech setting (vocabulary, unseen test sentences, recording conditions, determinism)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import audio_digest

from compressor.corpora import voices
from compressor.corpora.build import build_corpus
from compressor.corpora.corpus import CorpusSettings, plan, split_speakers
from compressor.corpora.datasets import LARGE_DEFAULTS, ReadSpeechArgs
from compressor.corpora.grammars_large import large_grammar
from compressor.corpora.voices import EN_ACCENTS, family

KINDS = [("read_speech", lang, "clean") for lang in ("en", "de", "es", "ru")] + [
    ("commands", "en", "clean"), ("shifted", "en", "accent"), ("shifted", "en", "domain"),
    ("shifted", "en", "variant"),
]


@pytest.mark.parametrize("kind,language,condition", KINDS)
def test_valid_and_test_voices_are_held_out(kind: str, language: str, condition: str) -> None:
    for setting in ("small", "large") if kind == "read_speech" else ("small",):
        s = CorpusSettings(kind=kind, language=language, condition=condition, setting=setting, train_size=300,
                           valid_size=40, test_size=40, num_speakers=40)
        sp = split_speakers(s)
        fam = {k: {voices.family(v.variant) for v in vs} for k, vs in sp.items()}
        assert fam["train"] and fam["valid"] and fam["test"]
        # no family (a variant and the variants sharing its formants) is on two sides
        assert not fam["train"] & fam["valid"] and not fam["train"] & fam["test"] and not fam["valid"] & fam["test"]
        # what the plan actually gives each utterance, not only the speaker lists
        p = plan(s)
        used = {k: {it["voice"]["variant"] for it in items} for k, items in p.items()}
        assert not used["train"] & (used["valid"] | used["test"])
        assert {it["speaker"] for it in p["test_seen"]} <= {it["speaker"] for it in p["train"]}
        pairs = {(it["text"], it["speaker"]) for it in p["train"]}
        assert not any((it["text"], it["speaker"]) in pairs for it in p["test_seen"])
        # training speakers range wider than evaluation speakers
        assert len(used["train"]) > max(len(used["valid"]), len(used["test"]))
        rates = {k: {it["voice"]["rate"] for it in items} for k, items in p.items()}
        assert len(rates["train"]) > len(rates["test"])


def test_voice_tables_are_consistent() -> None:
    sides = (voices.TRAIN_VARIANTS, voices.VALID_VARIANTS, voices.TEST_VARIANTS)
    fams = [{voices.family(v) for v in side} for side in sides]
    assert not fams[0] & fams[1] and not fams[0] & fams[2] and not fams[1] & fams[2]
    members = [v for vs in voices.FAMILIES.values() for v in vs]
    assert len(members) == len(set(members))  # a variant belongs to one family
    odd = [{voices.family(v) for v in side} for side in (voices.ODD_TRAIN, voices.ODD_VALID, voices.ODD_TEST)]
    assert not odd[0] & odd[1] and not odd[0] & odd[2] and not odd[1] & odd[2]


def test_large_grammar_vocabulary_and_sentences() -> None:
    import random

    for language in ("en", "de", "es", "ru"):
        g = large_grammar(language)
        assert len(g.vocabulary()) >= 5000, language
        rng = random.Random(0)
        sentences = [g.sample(rng) for _ in range(3000)]
        assert len(set(sentences)) > 2900  # practically no repeats
        used = {w for s in sentences for w in s.split()}
        assert len(used) > 2000 and used <= set(g.vocabulary())
        assert all(4 <= len(s.split()) <= 14 for s in sentences)


def test_large_plan_has_unseen_sentences_and_conditions() -> None:
    s = CorpusSettings(kind="read_speech", setting="large", **{**LARGE_DEFAULTS, "train_size": 3000})
    p = plan(s)
    assert {k: len(v) for k, v in p.items()} == {"train": 3000, "valid": 400, "test": 500, "test_seen": 500}
    train = {it["text"] for it in p["train"]}
    for split in ("valid", "test", "test_seen"):
        assert not any(it["text"] in train for it in p[split]), split
    conditions = {it["condition"] for items in p.values() for it in items}
    assert conditions == {"clean", "noise", "reverb"}
    assert len({w for it in p["train"] for w in it["text"].split()}) > 4000
    n_train = LARGE_DEFAULTS["num_speakers"] - LARGE_DEFAULTS["valid_speakers"] - LARGE_DEFAULTS["test_speakers"]
    assert len({it["speaker"] for it in p["train"]}) == n_train
    assert plan(s) == p  # a pure function of the settings


def test_large_training_voices_spread_over_accents_and_prosody() -> None:
    s = CorpusSettings(kind="read_speech", setting="large", **{**LARGE_DEFAULTS, "train_size": 3000})
    p = plan(s)
    voices = [it["voice"] for it in p["train"]]
    assert {v["name"] for v in voices} == set(EN_ACCENTS)
    assert len({v["pitch_range"] for v in voices}) > 3 and len({v["rate"] for v in voices}) > 5
    # evaluation voices: held-out variants only, none of a training family
    train_families = {family(v["variant"]) for v in voices}
    for split in ("valid", "test"):
        assert not {family(it["voice"]["variant"]) for it in p[split]} & train_families, split


def test_a_smaller_training_set_shares_the_evaluation_splits() -> None:
    """A corpus with fewer training utterances is a prefix of a larger one and has the same evaluation splits,
    none of whose sentences the larger one trains on (a model shipped from the larger one can be evaluated)."""
    small = plan(CorpusSettings(kind="read_speech", setting="large", **{**LARGE_DEFAULTS, "train_size": 300}))
    large = plan(CorpusSettings(kind="read_speech", setting="large", **{**LARGE_DEFAULTS, "train_size": 3000}))
    assert small["train"] == large["train"][:300]
    trained = {it["text"] for it in large["train"]}
    for split in ("valid", "test", "test_seen"):
        assert small[split] == large[split], split
        assert not any(it["text"] in trained for it in small[split]), split


def test_large_corpus_is_deterministic(tmp_path: Path) -> None:
    s = CorpusSettings(kind="read_speech", setting="large", train_size=10, valid_size=4, test_size=4,
                       test_seen_size=4, num_speakers=12, valid_speakers=2, test_speakers=2)

    a = build_corpus(s, tmp_path / "a", workers=2)
    b = build_corpus(s, tmp_path / "b", workers=1)
    assert audio_digest(a) == audio_digest(b) and len(list(a.rglob("*.flac"))) == 22
    manifest = (a / "test_seen.jsonl").read_text(encoding="utf-8")
    assert '"condition"' in manifest and "-large-" in a.name


def test_large_setting_defaults() -> None:
    args = ReadSpeechArgs(setting="large", train_size=500)
    assert args.train_size == 500 and args.test_size == LARGE_DEFAULTS["test_size"]
    assert ReadSpeechArgs().train_size == 2000 and ReadSpeechArgs().setting == "small"


def test_wide_or_narrow_voices_in_either_setting() -> None:
    """``voices`` picks the training voices of either setting; evaluation speakers and sentences stay the same,
    and a corpus that asks for its setting's own default is the same corpus, under the same cache key."""
    from compressor.corpora.datasets import _settings

    def settings(setting: str, voices: str | None) -> CorpusSettings:
        return _settings("read_speech", ReadSpeechArgs(setting=setting, voices=voices), "en", setting=setting)

    small, wide = settings("small", None), settings("small", "wide")
    assert settings("small", "narrow").key() == small.key() != wide.key()
    assert settings("large", "wide").key() == settings("large", None).key() != settings("large", "narrow").key()
    assert CorpusSettings(kind="read_speech").key() == small.key()  # corpora built before the option
    narrow_plan, wide_plan = plan(CorpusSettings(**{**small.__dict__, "train_size": 400})), \
        plan(CorpusSettings(**{**wide.__dict__, "train_size": 400}))
    names = {v["voice"]["name"] for v in wide_plan["train"]}
    assert names == set(EN_ACCENTS) and {v["voice"]["name"] for v in narrow_plan["train"]} == {"en-us"}
    assert len({v["voice"]["pitch"] for v in wide_plan["train"]}) > len(voices.TRAIN_PITCHES)
    assert wide_plan["test"] == narrow_plan["test"] and wide_plan["valid"] == narrow_plan["valid"]
    with pytest.raises(ValueError, match="English only"):
        ReadSpeechArgs(language="de", voices="wide")
