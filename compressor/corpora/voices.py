"""The synthetic speakers of the corpora and how they split into training and held-out voices.

A speaker is an espeak-ng voice (language or accent) x voice *variant* (``m3``, ``f2``, ``Hugo``...) x speaking
rate x pitch. Rate and pitch change a voice far less than its variant does (a variant sets the formants, the
voice quality, sometimes the synthesiser), so a test speaker that shares its variant with a training speaker
is not a new voice. Here the validation and test splits use variants that no training speaker uses, and
variants that share their formant settings (``steph``/``steph2``, ``iven``...``iven4``) are grouped into a
*family* that sits on one side only. Training speakers cover many families and wider rate/pitch ranges;
``test_seen`` is spoken by training speakers (new sentences), so seen- and unseen-voice error rates can be
compared side by side.

Which variants may be held out was measured (``benchmarks/checks/voice_intelligibility.py``): every held-out
variant is about as intelligible to an independent recogniser (PocketSphinx's English model) as the
training variants; variants that recogniser mostly fails on are left out of every split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from compressor.corpora.speaker import Voice

#: Variants that share formant settings (a variant outside every family is a family of its own).
FAMILIES: dict[str, tuple[str, ...]] = {
    "hugo": ("Diogo", "Henrique", "Hugo", "michel", "miguel", "anika", "anikaRobot"),
    "robo": ("m7", "m8", "Nguyen", "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5", "robosoft6"),
    "max": ("max", "RicishayMax", "RicishayMax2", "RicishayMax3", "robosoft7", "robosoft8"),
    "klatt": ("klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "adam", "benjamin", "david", "edward",
              "edward2", "mike2", "Reed", "announcer", "UniRobot", "caleb"),
    "f4": ("f3", "f4", "aunty", "linda", "belinda"),
    "f2": ("f2", "f5", "whisperf"),
    "gene": ("Gene", "Gene2"),
    "iven": ("iven", "iven2", "iven3", "iven4"),
    "steph": ("steph", "steph2", "steph3"),
    "storm": ("Storm", "victor", "Denis", "grandpa", "grandma", "shelby"),
    "mario": ("Mario", "Michael", "gustave", "marcelo"),
    "andy": ("Andy", "AnxiousAndy", "Lee"),
    "rob": ("rob", "robert", "quincy"),
}

#: Variants of the training speakers ("" is the voice's own default).
TRAIN_VARIANTS: tuple[str, ...] = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "f2", "f5", "f3", "f4", "Alex", "Mike", "Gene", "Gene2", "Marco",
    "ed", "john", "pablo", "sandro", "iven", "whisper", "croak", "klatt", "klatt2", "klatt3", "klatt4",
    "klatt5", "klatt6", "adam", "benjamin", "edward", "edward2", "mike2", "Reed", "announcer", "UniRobot",
)
#: Held-out variants: validation and test use different families, neither used in training.
VALID_VARIANTS: tuple[str, ...] = ("Diogo", "Henrique", "Hugo", "michel", "miguel", "anikaRobot")
TEST_VARIANTS: tuple[str, ...] = ("robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8",
                                  "RicishayMax2", "RicishayMax3", "f1")

#: Odd voices for the ``shifted`` corpus's ``variant`` condition (an adaptation target): Klatt-synthesiser,
#: creaky, whispered, aged and robotic voices, held out among themselves by family.
ODD_TRAIN: tuple[str, ...] = ("klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "caleb", "croak")
ODD_VALID: tuple[str, ...] = ("whisper", "grandpa", "grandma")
ODD_TEST: tuple[str, ...] = ("whisperf", "robosoft", "robosoft2", "robosoft3")

TRAIN_RATES = (130, 150, 175, 200, 225)
#: The large read-speech setting spreads its training speakers wider: every English accent espeak-ng has, with
#: the training variants, rates, pitches and pitch ranges over most of the synthesiser's span.
WIDE_RATES = (110, 130, 150, 170, 190, 210, 235, 260)
WIDE_PITCHES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
WIDE_RANGES = (10, 30, 50, 70, 90)
EN_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan",
              "en-gb-x-gbcwmd")
TRAIN_PITCHES = (30, 40, 50, 60, 70)
EVAL_RATES = (150, 175, 200)
EVAL_PITCHES = (35, 50, 65)

ACCENTS = ("en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-rp", "en", "en-gb-x-gbclan")
ESPEAK_VOICE = {"en": "en-us", "de": "de", "es": "es", "ru": "ru"}


#: Blended variants (``blend<N>``, :mod:`compressor.corpora.voice_blends`): new training voices composed from the
#: training variants' settings.
BLEND_PREFIX = "blend"


def is_blend(variant: str) -> bool:
    """Whether a variant name is a blend (``blend<N>``)."""
    return variant.startswith(BLEND_PREFIX) and variant[len(BLEND_PREFIX):].isdigit()


def blend_names(n: int) -> tuple[str, ...]:
    """The names of the first ``n`` blends."""
    return tuple(f"{BLEND_PREFIX}{i}" for i in range(n))


def family(variant: str) -> str:
    """The family of a variant (its own name when it has none)."""
    for name, members in FAMILIES.items():
        if variant in members:
            return name
    return variant or "default"


@dataclass(frozen=True)
class VoiceSet:
    """The speakers a split may draw: espeak voices x variants x rates x pitches."""

    names: tuple[str, ...]
    variants: tuple[str, ...]
    rates: tuple[int, ...]
    pitches: tuple[int, ...]
    ranges: tuple[int, ...] = ()  # pitch ranges; empty: espeak's default (50), drawing no random number

    def size(self) -> int:
        return len(self.names) * len(self.variants) * len(self.rates) * len(self.pitches) * max(1, len(self.ranges))

    def draw(self, n: int, rng: random.Random) -> list[Voice]:
        """``n`` distinct speakers spread evenly over voices and variants (variant ``i % k`` for speaker
        ``i`` after a seeded shuffle), each with a random rate and pitch (and pitch range, when the set has
        ranges)."""
        combos = [(name, v) for v in self.variants for name in self.names]
        rng.shuffle(combos)
        seen: set[str] = set()
        out: list[Voice] = []
        for i in range(n):
            name, variant = combos[i % len(combos)]
            for _ in range(100):
                voice = Voice(name, variant, rate=rng.choice(self.rates), pitch=rng.choice(self.pitches))
                if self.ranges:
                    voice = Voice(name, variant, voice.rate, voice.pitch, pitch_range=rng.choice(self.ranges))
                if voice.speaker_id not in seen:
                    break
            seen.add(voice.speaker_id)
            out.append(voice)
        return out


def wide_by_default(kind: str, language: str, setting: str) -> bool:
    """Whether a corpus trains on wide voices unless told otherwise: English read speech, ``large`` setting."""
    return kind == "read_speech" and setting == "large" and language == "en"


def voice_sets(kind: str, language: str = "en", condition: str = "clean", setting: str = "small",
               voices: str = "", blends: int = 0) -> dict[str, VoiceSet]:
    """Training / validation / test voice sets of a corpus kind (``commands``, ``read_speech``, ``shifted``).

    English read speech with ``voices="wide"`` (the ``large`` setting's default) trains on every English accent
    with wide rates, pitches and pitch ranges; ``"narrow"`` on one accent and a narrow span; ``""`` takes the
    setting's default. ``blends`` adds that many blended variants to the training variants. Validation and test
    speakers are the same held-out variants either way."""
    names: tuple[str, ...] = (ESPEAK_VOICE[language],)
    train, valid, test = TRAIN_VARIANTS + blend_names(blends), VALID_VARIANTS, TEST_VARIANTS
    wide = voices == "wide" or (voices == "" and wide_by_default(kind, language, setting))
    if wide and kind == "read_speech" and language == "en":
        return {"train": VoiceSet(EN_ACCENTS, train, WIDE_RATES, WIDE_PITCHES, WIDE_RANGES),
                "valid": VoiceSet(names, valid, EVAL_RATES, EVAL_PITCHES),
                "test": VoiceSet(names, test, EVAL_RATES, EVAL_PITCHES)}
    if kind == "shifted" and condition == "accent":
        names = ACCENTS
    elif kind == "shifted" and condition == "variant":
        names, train, valid, test = ("en-us",), ODD_TRAIN, ODD_VALID, ODD_TEST
    return {"train": VoiceSet(names, train, TRAIN_RATES, TRAIN_PITCHES),
            "valid": VoiceSet(names, valid, EVAL_RATES, EVAL_PITCHES),
            "test": VoiceSet(names, test, EVAL_RATES, EVAL_PITCHES)}
