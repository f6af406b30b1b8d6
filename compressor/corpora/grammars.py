"""Sentence sources of the synthetic corpora: a Fluent-Speech-Commands-like intent grammar and small
controlled-vocabulary read-speech grammars for English, German, Spanish and Russian (plus a finance domain).

Every generator is a pure function of a :class:`random.Random`, so corpora are reproducible from a seed.
The read-speech grammars are deliberately small (tens of words, 3–7 words a sentence) so that a small
RNN-T can reach a useful word error rate after minutes of CPU training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# ------------------------------------------------------------------------------------------------
# Spoken language understanding: (action, object, location) intents, many phrasings each (FSC-like)
# ------------------------------------------------------------------------------------------------

#: The 31 (action, object, location) intents of Fluent Speech Commands.
INTENTS: list[tuple[str, str, str]] = [
    ("activate", "lamp", "none"), ("activate", "lights", "bedroom"), ("activate", "lights", "kitchen"),
    ("activate", "lights", "none"), ("activate", "lights", "washroom"), ("activate", "music", "none"),
    ("bring", "juice", "none"), ("bring", "newspaper", "none"), ("bring", "shoes", "none"),
    ("bring", "socks", "none"), ("change language", "Chinese", "none"),
    ("change language", "English", "none"),
    ("change language", "German", "none"), ("change language", "Korean", "none"),
    ("change language", "none", "none"), ("deactivate", "lamp", "none"), ("deactivate", "lights", "bedroom"),
    ("deactivate", "lights", "kitchen"), ("deactivate", "lights", "none"),
    ("deactivate", "lights", "washroom"),
    ("deactivate", "music", "none"), ("decrease", "heat", "bedroom"), ("decrease", "heat", "kitchen"),
    ("decrease", "heat", "none"), ("decrease", "heat", "washroom"), ("decrease", "volume", "none"),
    ("increase", "heat", "bedroom"), ("increase", "heat", "kitchen"), ("increase", "heat", "none"),
    ("increase", "heat", "washroom"), ("increase", "volume", "none"),
]

_ON = ["turn on the {o}", "switch on the {o}", "turn the {o} on", "switch the {o} on", "{o} on",
       "put the {o} on", "activate the {o}", "i need the {o} on"]
_OFF = ["turn off the {o}", "switch off the {o}", "turn the {o} off", "switch the {o} off", "{o} off",
        "put the {o} off", "deactivate the {o}", "i do not need the {o}"]
_LIGHTS_ON_LOC = ["turn on the lights in the {l}", "switch on the {l} lights", "{l} lights on",
                  "turn the {l} lights on", "lights on in the {l}", "switch the lights on in the {l}",
                  "turn on the {l} lights", "put the lights on in the {l}"]
_LIGHTS_OFF_LOC = ["turn off the lights in the {l}", "switch off the {l} lights", "{l} lights off",
                   "turn the {l} lights off", "lights off in the {l}", "switch the lights off in the {l}",
                   "turn off the {l} lights", "put the lights off in the {l}"]
_BRING = ["bring me {o}", "bring me the {o}", "get me {o}", "fetch me the {o}", "i need {o}",
          "go get me {o}", "bring {o}", "could you bring me {o}"]
_LANG = ["change the language to {o}", "switch the language to {o}", "set my device to {o}",
         "i want to use {o}", "language {o}", "switch to {o}", "use {o}", "set the language to {o}"]
_LANG_ANY = ["change the language", "switch the language", "change language", "switch languages",
             "language settings", "use a different language", "i need a different language",
             "set another language"]
_HEAT = {
    "increase": ["turn up the heat", "increase the heating", "make it warmer", "heat up", "more heat",
                 "turn the heat up", "increase the temperature", "it is too cold"],
    "decrease": ["turn down the heat", "decrease the heating", "make it cooler", "less heat",
                 "turn the heat down", "decrease the temperature", "it is too hot", "cool down"],
}
_HEAT_LOC = {
    "increase": ["turn up the heat in the {l}", "increase the heating in the {l}", "make the {l} warmer",
                 "heat up the {l}", "more heat in the {l}", "turn the {l} heat up",
                 "increase the temperature in the {l}", "the {l} is too cold"],
    "decrease": ["turn down the heat in the {l}", "decrease the heating in the {l}", "make the {l} cooler",
                 "cool down the {l}", "less heat in the {l}", "turn the {l} heat down",
                 "decrease the temperature in the {l}", "the {l} is too hot"],
}
_VOLUME = {
    "increase": ["turn up the volume", "increase the volume", "louder", "make it louder", "volume up",
                 "turn it up", "i cannot hear that", "turn the sound up"],
    "decrease": ["turn down the volume", "decrease the volume", "quieter", "make it quieter", "volume down",
                 "turn it down", "too loud", "turn the sound down"],
}


def phrasings(intent: tuple[str, str, str]) -> list[str]:
    """All phrasings of one (action, object, location) intent (8 each, 248 in all, as in FSC)."""
    action, obj, loc = intent
    o, l_ = obj.lower(), loc
    if action in ("activate", "deactivate"):
        if obj == "lights" and loc != "none":
            return [t.format(l=l_) for t in (_LIGHTS_ON_LOC if action == "activate" else _LIGHTS_OFF_LOC)]
        return [t.format(o=o) for t in (_ON if action == "activate" else _OFF)]
    if action == "bring":
        return [t.format(o=o) for t in _BRING]
    if action == "change language":
        return list(_LANG_ANY) if obj == "none" else [t.format(o=o) for t in _LANG]
    if obj == "volume":
        return list(_VOLUME[action])
    return [t.format(l=l_) for t in _HEAT_LOC[action]] if loc != "none" else list(_HEAT[action])


def slot_values() -> dict[str, list[str]]:
    """The values of each slot (sorted), the index order of the ``action``/``object``/``location`` labels."""
    return {
        "action": sorted({a for a, _, _ in INTENTS}),
        "object": sorted({o for _, o, _ in INTENTS}),
        "location": sorted({loc for _, _, loc in INTENTS}),
    }


def intent_name(intent: tuple[str, str, str]) -> str:
    return "_".join(part.replace(" ", "_") for part in intent)


# ------------------------------------------------------------------------------------------------
# Read speech: small controlled-vocabulary grammars
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grammar:
    """``templates`` use ``{slot}`` placeholders filled from ``slots``; all words lower case."""

    templates: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]

    def sample(self, rng: random.Random) -> str:
        template = rng.choice(self.templates)
        out = template
        while "{" in out:
            start = out.index("{")
            end = out.index("}", start)
            out = out[:start] + rng.choice(self.slots[out[start + 1:end]]) + out[end + 1:]
        return " ".join(out.split())

    def vocabulary(self) -> list[str]:
        words: set[str] = set()
        for t in self.templates:
            words.update(w for w in t.split() if "{" not in w)
        for values in self.slots.values():
            for v in values:
                words.update(v.split())
        return sorted(words)


GRAMMARS: dict[str, Grammar] = {
    "en": Grammar(
        templates=("{verb} the {adj} {noun}", "{verb} {num} {adj} {nouns}", "the {noun} is {place}",
                   "put the {adj} {noun} {place}", "{verb} the {noun} {place}", "where is the {adj} {noun}",
                   "i see {num} {nouns}", "the {adj} {noun} is {adj2}"),
        slots={
            "verb": ("take", "move", "open", "find", "show", "give", "paint", "clean"),
            "adj": ("red", "blue", "green", "black", "white", "small", "big", "old"),
            "adj2": ("new", "heavy", "light", "broken", "clean", "empty"),
            "noun": ("box", "cup", "book", "chair", "table", "door", "ball", "window", "bottle", "lamp"),
            "nouns": ("boxes", "cups", "books", "chairs", "tables", "doors", "balls", "bottles"),
            "num": ("two", "three", "four", "five", "six", "seven", "eight", "nine"),
            "place": ("on the table", "under the chair", "near the door", "in the box", "by the window"),
        }),
    "de": Grammar(
        templates=("{verb} den {adj}en {noun}", "ich sehe {num} {nouns}", "der {noun} ist {place}",
                   "wo ist der {adj}e {noun}", "der {adj}e {noun} ist {adj2}", "{verb} den {noun} bitte"),
        slots={
            "verb": ("nimm", "finde", "zeig", "gib", "hol", "such"),
            "adj": ("rot", "blau", "grün", "schwarz", "weiß", "klein", "groß", "alt"),
            "adj2": ("neu", "schwer", "leicht", "kaputt", "sauber", "leer"),
            "noun": ("stuhl", "tisch", "ball", "becher", "schrank", "hut", "kasten", "löffel"),
            "nouns": ("stühle", "tische", "bälle", "becher", "schränke", "hüte", "bücher", "flaschen"),
            "num": ("zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
            "place": ("auf dem tisch", "unter dem stuhl", "neben der tür", "im kasten", "am fenster"),
        }),
    "es": Grammar(
        templates=("{verb} la {noun} {adj}", "veo {num} {nouns} {adjs}", "la {noun} está {place}",
                   "dónde está la {noun} {adj}", "la {noun} {adj} es {adj2}", "{verb} la {noun} {place}"),
        slots={
            "verb": ("toma", "mueve", "abre", "busca", "muestra", "dame", "limpia", "pinta"),
            "adj": ("roja", "azul", "verde", "negra", "blanca", "pequeña", "grande", "vieja"),
            "adjs": ("rojas", "azules", "verdes", "negras", "blancas", "pequeñas", "grandes", "viejas"),
            "adj2": ("nueva", "pesada", "ligera", "rota", "limpia", "vacía"),
            "noun": ("caja", "taza", "silla", "mesa", "puerta", "pelota", "ventana", "botella"),
            "nouns": ("cajas", "tazas", "sillas", "mesas", "puertas", "pelotas", "ventanas", "botellas"),
            "num": ("dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"),
            "place": ("en la mesa", "bajo la silla", "junto a la puerta", "en la caja",
                      "cerca de la ventana"),
        }),
    "ru": Grammar(
        templates=("{verb} {adj} {noun}", "я вижу {noun} {place}", "где {adj} {noun}", "{noun} {place}",
                   "{adj} {noun} {adj2}", "{verb} {noun} {place}"),
        slots={
            "verb": ("возьми", "найди", "покажи", "дай", "открой", "убери"),
            "adj": ("красный", "синий", "зелёный", "чёрный", "белый", "малый", "большой", "старый"),
            "adj2": ("новый", "тяжёлый", "лёгкий", "чистый", "пустой", "тёплый"),
            "noun": ("стол", "стул", "мяч", "шкаф", "нож", "дом", "кот", "сад"),
            "place": ("на столе", "под стулом", "у двери", "в коробке", "у окна"),
        }),
}

#: A domain-shifted English grammar: finance terms (for domain adaptation studies).
FINANCE = Grammar(
    templates=("{verb} {num} {unit} to my {account}", "what is my {account} balance",
               "the {asset} price {move} {num} percent", "{verb} the {asset} {when}",
               "show the {account} statement for {month}", "the interest rate {move} {when}"),
    slots={
        "verb": ("transfer", "deposit", "withdraw", "invest", "sell", "buy"),
        "num": ("two", "three", "five", "ten", "twenty", "fifty", "hundred"),
        "unit": ("dollars", "euros", "shares", "bonds"),
        "account": ("savings", "checking", "brokerage", "pension", "credit"),
        "asset": ("stock", "bond", "fund", "gold", "dividend", "equity"),
        "move": ("rose", "fell", "dropped", "climbed"),
        "when": ("today", "tomorrow", "this week", "next month"),
        "month": ("january", "march", "june", "october"),
    })


def read_speech_grammar(language: str, domain: str = "general") -> Grammar:
    if domain == "finance":
        return FINANCE
    return GRAMMARS[language]
