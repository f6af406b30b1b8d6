"""Blended voice variants: composed from the training variants' settings only, the same file and audio for the
same name, on the training side only, and a private data folder that speaks every other voice as installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import espeakng_loader
import pytest
from support import audio_digest

from compressor.corpora.build import build_corpus
from compressor.corpora.corpus import CorpusSettings, plan
from compressor.corpora.voice_blends import (
    FORMANT_HEIGHT,
    FORMANT_SHIFT,
    GROUPS,
    RECIPE,
    SPREAD,
    blend_text,
    private_data_dir,
)
from compressor.corpora.voices import TEST_VARIANTS, TRAIN_VARIANTS, VALID_VARIANTS, blend_names, family, is_blend

DATA = Path(espeakng_loader.get_data_path())


def _lines(variant: str) -> set[str]:
    text = (DATA / "voices" / "!v" / variant).read_text(encoding="latin-1")
    return {" ".join(line.split()) for line in text.splitlines() if line.split()}


def _within(value: int, base: int, low: float, high: float) -> bool:
    return base * low - 1 <= value <= base * high + 1


def test_blends_take_their_settings_from_training_variants_only() -> None:
    donors = set().union(*(_lines(v) for v in TRAIN_VARIANTS if v))
    held_out = set().union(*(_lines(v) for v in VALID_VARIANTS + TEST_VARIANTS)) - donors
    keys = {k for ks in GROUPS.values() for k in ks}
    texts = [blend_text(name, DATA) for name in blend_names(60)]
    assert len(set(texts)) == 60 and blend_text("blend7", DATA) == texts[7]
    assert all(any(line.startswith(f"{key} ") for line in text.splitlines()) for key in SPREAD for text in texts)
    for text in texts:
        for line in text.splitlines()[2:]:
            words = line.split()
            assert words[0] in keys, line
            if words[0] == "formant" and words[1] in "12345":
                # frequency and height moved within their spans, width (and any tail) from a donor's line
                assert any(d.split()[:2] == words[:2] and d.split()[4:] == words[4:]
                           and _within(int(words[2]), int(d.split()[2]), 1 - FORMANT_SHIFT, 1 + FORMANT_SHIFT)
                           and _within(int(words[3]), int(d.split()[3]), *FORMANT_HEIGHT) for d in donors), line
            elif words[0] in SPREAD:
                # every blend writes these, spread around its donor's values (around 100 where the donor has none)
                default, low, high = SPREAD[words[0]]
                bases = [tuple(int(w) for w in d.split()[1:]) for d in donors if d.split()[0] == words[0]]
                assert any(len(b) == len(words) - 1 and all(_within(int(w), v, low, high) for w, v in
                                                             zip(words[1:], b)) for b in [*bases, default]), line
            else:
                assert line in donors and line not in held_out, line
    with pytest.raises(ValueError, match="not a blend"):
        blend_text("m3", DATA)
    assert is_blend("blend12") and not is_blend("blend") and not is_blend("m3")


def test_blends_train_only_and_disjoint_from_held_out_families() -> None:
    s = CorpusSettings(kind="read_speech", voices="wide", blends=40, train_size=600, valid_size=40, test_size=40,
                       num_speakers=120)
    p = plan(s)
    used = {k: {it["voice"]["variant"] for it in items} for k, items in p.items()}
    assert any(is_blend(v) for v in used["train"])
    assert not any(is_blend(v) for v in used["valid"] | used["test"])
    train_families = {family(v) for v in used["train"]}
    assert not train_families & {family(v) for v in used["valid"] | used["test"]}
    base = CorpusSettings(kind="read_speech", voices="wide", train_size=600, valid_size=40, test_size=40,
                          num_speakers=120)
    assert base.key() != s.key() and p["test"] == plan(base)["test"]  # the same evaluation speakers and sentences


_SPEAK = """
import hashlib, sys
from compressor.corpora import voice_blends
from compressor.corpora.synth import Espeak, Voice
engine = Espeak.get()
if sys.argv[1] == "private":
    engine._initialise(voice_blends.private_data_dir(engine._installed_data))
print(" ".join(hashlib.sha1(engine.synthesize("seven red boxes", Voice("en-us", v), seed=3).tobytes()).hexdigest()
               for v in sys.argv[2:]))
"""


def _speak(mode: str, *variants: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _SPEAK, mode, *variants], capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_private_data_folder_speaks_as_installed_and_blends_repeat() -> None:
    voices = ("m3", "robosoft5", "klatt2")
    assert _speak("installed", *voices) == _speak("private", *voices)
    first, again = _speak("installed", "blend3", "m3"), _speak("installed", "blend3", "m3")
    assert first == again and first[0] != _speak("installed", "blend4")[0]
    assert Path(private_data_dir(str(DATA), 0), "voices", "!v", "blend3").is_file()
    # a folder keeps the blend files it was given: another recipe's blends live in folders of their own
    assert private_data_dir(str(DATA), 0).endswith(f"-r{RECIPE}-g0")
    # espeak-ng lists 349 voices at most: blends far apart live in folders of their own and all speak
    far = [f"blend{i}" for i in (0, 120, 260, 399, 1999)]
    assert len(set(_speak("installed", *far))) == len(far)
    assert not Path(private_data_dir(str(DATA), 0), "voices", "!v", "blend399").exists()


def test_a_corpus_with_blends_is_deterministic(tmp_path: Path) -> None:
    s = CorpusSettings(kind="read_speech", voices="wide", blends=6, train_size=12, valid_size=3, test_size=3,
                       test_seen_size=3, num_speakers=12, valid_speakers=2, test_speakers=2)

    a = build_corpus(s, tmp_path / "a", workers=2)
    b = build_corpus(s, tmp_path / "b", workers=1)
    assert audio_digest(a) == audio_digest(b)
    assert "blend" in (a / "train.jsonl").read_text(encoding="utf-8")
    producer = json.loads((a / "DONE").read_text(encoding="utf-8"))["producer"]
    assert producer["blends"] == 6 and producer["voices"] == "wide"
    # a corpus that sets neither records neither: markers written before these options still verify
    assert not {"voices", "blends"} & set(CorpusSettings(kind="read_speech").record())
