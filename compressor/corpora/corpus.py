"""What a synthetic corpus is: its settings (:class:`CorpusSettings`, which name its cache folder), its speakers
and the utterances of every split (:func:`plan`), before any audio exists.

Speakers are espeak voice x variant x speaking rate x pitch combinations. Validation and test speakers use
voice variants that no training speaker uses (:mod:`compressor.corpora.voices`); ``test_seen`` holds new
utterances of the training speakers, so a model's error on seen and unseen voices can be compared.
"""


from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from compressor.core.errors import UserError
from compressor.corpora import grammars
from compressor.corpora.grammars_large import large_grammar
from compressor.corpora.lexicon import lexicon_versions
from compressor.corpora.synth import Voice
from compressor.corpora.voice_blends import RECIPE as BLEND_RECIPE
from compressor.corpora.voices import voice_sets

VERSION = 2  # bump when the synthesis recipe changes (2: held-out voice variants, test_seen, large setting)
SPLITS = ("train", "valid", "test", "test_seen")
#: The large setting's own recipe version (2: every English accent and wide prosody in training; evaluation
#: sentences kept out of the first TRAIN_RESERVE training sentences, whatever train_size is).
LARGE_VERSION = 2
#: In the large setting, evaluation sentences avoid the first this many sentences of the training stream, so a
#: corpus with a smaller train_size has the same evaluation splits as a larger one, and a model trained on the
#: larger one (a shipped teacher) never saw an evaluation sentence of the smaller one.
TRAIN_RESERVE = 40000

#: Recording conditions of the large setting, baked into the audio of every split with the data layer's
#: augmentation: (name, probability, augmentation arguments).
CONDITIONS: tuple[tuple[str, float, dict[str, Any]], ...] = (
    ("clean", 0.4, {}),
    ("noise", 0.3, {"noise_snr": (10.0, 30.0)}),
    ("reverb", 0.3, {"noise_snr": (15.0, 35.0), "reverb": 1.0}),
)

#: The far-field recording of the commands corpus (``recording: far``): every utterance of every split.
FAR_FIELD: tuple[str, dict[str, Any]] = ("far", {"noise_snr": (0.0, 10.0), "reverb": 1.0})


@dataclass
class CorpusSettings:
    """Everything that determines a synthetic corpus (and so its cache key)."""

    kind: str  # commands | read_speech | shifted
    language: str = "en"
    condition: str = "clean"  # shifted: accent | domain | variant
    setting: str = "small"  # read_speech: small (controlled grammar) | large (thousands of words, noise);
    # commands: small | far (far-field recording)
    train_size: int = 2000
    valid_size: int = 250
    test_size: int = 250
    test_seen_size: int | None = None  # default: test_size
    num_speakers: int = 60  # in all: training speakers = num_speakers - valid_speakers - test_speakers
    valid_speakers: int = 6
    test_speakers: int = 8
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    voices: str = ""  # read_speech: narrow | wide training voices; "" the setting's default (keyed only when set)
    blends: int = 0  # blended training variants (keyed only when set)

    def sizes(self) -> dict[str, int]:
        seen = self.test_size if self.test_seen_size is None else self.test_seen_size
        return {"train": self.train_size, "valid": self.valid_size, "test": self.test_size, "test_seen": seen}

    def record(self) -> dict[str, Any]:
        """The settings as a corpus records them (its key, its ``DONE`` marker): options left unset are left
        out, so corpora built before those options existed stay valid."""
        out = asdict(self)
        for option in ("voices", "blends"):
            if not out[option]:
                del out[option]
        return out

    def key(self) -> str:
        blob: dict[str, Any] = {"v": VERSION, **self.record()}
        if self.blends:
            blob["blend_recipe"] = BLEND_RECIPE
        if self.setting == "large":
            blob["lexicon"] = lexicon_versions()  # the word lists come from these packages
            blob["large"] = LARGE_VERSION
        return hashlib.sha1(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]

    def dirname(self) -> str:
        tag = self.kind if self.kind == "commands" else f"{self.kind}-{self.language}"
        if self.kind == "shifted":
            tag += f"-{self.condition}"
        if self.setting != "small":
            tag += f"-{self.setting}"
        return f"{tag}-{self.key()}"


# ------------------------------------------------------------------------------------------------
# Speakers and sentences
# ------------------------------------------------------------------------------------------------


def split_speakers(s: CorpusSettings) -> dict[str, list[Voice]]:
    """Training, validation and test speakers, drawn by the seed from voice sets whose variants do not
    overlap (:mod:`compressor.corpora.voices`); ``test_seen`` reuses the training speakers."""
    sets = voice_sets(s.kind, s.language, s.condition, s.setting, s.voices, s.blends)
    n_train = max(1, s.num_speakers - s.valid_speakers - s.test_speakers)
    wanted = {"train": n_train, "valid": s.valid_speakers, "test": s.test_speakers}
    out: dict[str, list[Voice]] = {}
    for split, n in wanted.items():
        if n > sets[split].size():
            raise UserError(f"{s.kind}: asks for {n} {split} speakers, only {sets[split].size()} exist")
        out[split] = sets[split].draw(n, random.Random(f"speakers:{s.seed}:{split}"))
    out["test_seen"] = out["train"]
    return out


def _grammar(s: CorpusSettings) -> Any:
    if s.setting == "large":
        return large_grammar(s.language)
    domain = "finance" if (s.kind == "shifted" and s.condition == "domain") else "general"
    return grammars.read_speech_grammar(s.language, domain)


def _sentence(s: CorpusSettings, rng: random.Random) -> dict[str, Any]:
    if s.kind == "commands":
        values = grammars.slot_values()
        intent = rng.choice(grammars.INTENTS)
        text = rng.choice(grammars.phrasings(intent))
        return {"text": text, "intent": grammars.intent_name(intent), "action": intent[0], "object": intent[1],
                "location": intent[2], "slots": {k: intent[i] for i, k in enumerate(values)}}
    return {"text": _grammar(s).sample(rng)}


def _reserved_texts(s: CorpusSettings) -> set[str]:
    """The texts of the first :data:`TRAIN_RESERVE` items of the training stream (the same draws as
    :func:`plan`'s, so a training split of any size up to it is a prefix of them)."""
    rng = random.Random(f"{s.kind}:{s.language}:{s.condition}:{s.setting}:{s.seed}:train")
    n_voices = len(split_speakers(s)["train"])
    texts: set[str] = set()
    for _ in range(max(TRAIN_RESERVE, s.train_size)):
        texts.add(_sentence(s, rng)["text"])
        rng.randrange(n_voices)
        rng.randrange(2**31)
        rng.random()
    return texts


def plan(s: CorpusSettings) -> dict[str, list[dict[str, Any]]]:
    """The utterances of every split (text, speaker, labels, recording condition) before any audio exists.

    Valid and test speakers use voice variants no training speaker uses; ``test_seen`` is spoken by the
    training speakers. A (sentence, speaker) pair of the training split never recurs in another split, and
    in the large setting no evaluation sentence occurs in training at all.
    """
    speakers = split_speakers(s)
    out: dict[str, list[dict[str, Any]]] = {}
    train_texts: set[str] = set()
    train_pairs: set[tuple[str, str]] = set()
    for split, n in s.sizes().items():
        # far-field commands are the clean corpus's utterances, recorded far away
        setting = "small" if s.setting == "far" else s.setting
        rng = random.Random(f"{s.kind}:{s.language}:{s.condition}:{setting}:{s.seed}:{split}")
        voices = speakers[split]
        items: list[dict[str, Any]] = []
        tries = 0
        while len(items) < n:
            item = _sentence(s, rng)
            voice = voices[rng.randrange(len(voices))]
            tries += 1
            if split != "train" and tries < 100 * n and (
                (s.setting == "large" and item["text"] in train_texts)
                or (item["text"], voice.speaker_id) in train_pairs
            ):
                continue
            item.update(id=f"{split}-{len(items):06d}", speaker=voice.speaker_id, voice=asdict(voice),
                        synth_seed=rng.randrange(2**31))
            if s.setting == "far":
                item["condition"] = FAR_FIELD[0]
            if s.setting == "large":
                r, acc = rng.random(), 0.0
                for name, p, _ in CONDITIONS:
                    acc += p
                    if r < acc or name == CONDITIONS[-1][0]:
                        item["condition"] = name
                        break
            items.append(item)
        if split == "train":
            train_texts = {it["text"] for it in items}
            if s.setting == "large":
                train_texts |= _reserved_texts(s)
            train_pairs = {(it["text"], it["speaker"]) for it in items}
        out[split] = items
    return out
