"""Sentences of the ``large`` read-speech setting: thousands of words per language, real syntactic frames.

* English: *semantically unpredictable sentences* (the design of speech-intelligibility tests): hand-written
  syntactic frames ("the {adj} {noun} {verb, past} the {noun} {preposition} the {noun}") whose open slots
  take nouns (singular or plural), adjectives and verbs (base or past) from the most frequent English words
  of a single part of speech (wordfreq x lemminflect, :mod:`compressor.corpora.lexicon`). Grammatical, but the
  words of a sentence do not predict each other, so a model must hear them.
* German, Spanish, Russian: no pip package we use ships a part-of-speech lexicon for them, so their frames
  are *carrier sentences* ("das wort {w} steht vor dem wort {w}"), grammatical with any word in the slot;
  the slots take the language's most frequent content words (wordfreq).

Open-slot words are drawn with probability proportional to the square root of their frequency: common words
recur, rare ones appear a few times. Every generator is a pure function of a :class:`random.Random`.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass, field
from functools import lru_cache

from compressor.corpora import lexicon

#: English open-class sizes (nouns and verbs also give plural / past forms).
EN_NOUNS, EN_ADJECTIVES, EN_VERBS = 2500, 1000, 700
#: Content words of the carrier-sentence languages.
CARRIER_WORDS = 5000

_EN_CLOSED = {
    "prep": ("in", "on", "under", "near", "behind", "with", "without", "from", "into", "after", "before",
             "across", "over", "inside", "beside", "around", "above", "below", "through", "along"),
    "time": ("today", "yesterday", "tomorrow", "at night", "last week", "this morning", "every day", "again",
             "later", "now", "on monday", "in the evening", "after lunch", "next year"),
    "num": ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
            "twenty", "thirty", "forty", "fifty", "many", "some", "several", "a few"),
    "pron": ("i", "you", "he", "she", "we", "they"),
    "adv": ("very", "quite", "rather", "too", "so", "not", "always", "never", "still"),
    "det": ("the", "my", "your", "his", "her", "our", "their", "this", "that"),
}

#: English frames. Slots: {N} noun, {NS} plural noun, {A} adjective, {V} verb, {VD} past tense, {aA}/{aN}
#: the indefinite article with the next word, and the closed classes above.
EN_TEMPLATES = (
    "{det} {A} {N} {VD} the {N}",
    "{aA} {N} {VD} {num} {NS}",
    "the {NS} {VD} the {A} {N} {prep} the {N}",
    "why did the {N} {V} the {A} {NS}",
    "where did {det} {NS} {V} the {N}",
    "the {N} of the {N} was {A}",
    "{V} the {A} {N} {prep} the {N}",
    "{num} {A} {NS} {VD} {prep} the {N} {time}",
    "{det} {N} is {adv} {A} {time}",
    "we {VD} {aN} and {aA} {N}",
    "did you {V} the {N} or the {NS}",
    "{pron} {VD} that the {N} was {A}",
    "the {A} {NS} will {V} the {N} {time}",
    "there is {aA} {N} {prep} the {N}",
    "please {V} the {NS} before the {N}",
    "{det} {N} {VD} every {A} {N}",
    "{pron} never {VD} {det} {A} {NS}",
    "how many {NS} did the {N} {V}",
)

#: Carrier sentences: {w} takes any content word.
CARRIER_TEMPLATES: dict[str, tuple[str, ...]] = {
    "de": ("ich sage {w} und {w}", "das wort {w} steht vor dem wort {w}", "nach {w} kommt {w}",
           "bitte schreib {w} {w} und {w}", "er hat {w} gesagt und sie hat {w} gesagt",
           "wir lesen heute {w} {w} und {w}", "das nächste wort heißt {w}", "sie hat {w} zweimal gesagt",
           "schreib {w} und dann {w} an die tafel", "zuerst kommt {w} und danach {w}",
           "auf der liste stehen {w} {w} und {w}", "hast du {w} oder {w} gehört",
           "kannst du {w} noch einmal sagen", "ich habe {w} nicht verstanden"),
    "es": ("digo {w} y {w}", "la palabra {w} va antes de {w}", "después de {w} viene {w}",
           "por favor escribe {w} {w} y {w}", "él dijo {w} y ella dijo {w}", "hoy leemos {w} {w} y {w}",
           "la siguiente palabra es {w}", "ella dijo {w} dos veces", "escribe {w} y luego {w} en la pizarra",
           "primero viene {w} y después {w}", "en la lista están {w} {w} y {w}", "oíste {w} o {w}",
           "puedes decir {w} otra vez", "no entendí la palabra {w}"),
    "ru": ("я говорю {w} и {w}", "слово {w} стоит перед словом {w}", "после слова {w} идёт слово {w}",
           "пожалуйста напиши {w} {w} и {w}", "он сказал {w} а она сказала {w}",
           "сегодня мы читаем {w} {w} и {w}", "следующее слово в списке {w}", "она сказала {w} два раза",
           "напиши {w} и потом {w} на доске", "сначала идёт {w} а потом {w}", "в списке есть {w} {w} и {w}",
           "ты слышал {w} или {w}", "скажи {w} ещё раз", "я не понял слово {w}"),
}


@dataclass
class _Pool:
    """Words drawn with probability proportional to sqrt(frequency)."""

    words: tuple[str, ...]
    cum: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, words: list[str], freqs: list[float]) -> _Pool:
        return cls(tuple(words), list(itertools.accumulate(f ** 0.5 for f in freqs)))

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_right(self.cum, rng.random() * self.cum[-1])


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class LargeGrammar:
    """Samples sentences of one language (see the module docstring); :meth:`vocabulary` lists every word."""

    def __init__(self, language: str) -> None:
        self.language = language
        if language == "en":
            c = lexicon.english_classes(EN_NOUNS, EN_ADJECTIVES, EN_VERBS)
            self._nouns = _Pool.of([n for n, _, _ in c.nouns], [f for _, _, f in c.nouns])
            self._plurals = tuple(p for _, p, _ in c.nouns)
            self._singulars = tuple(n for n, _, _ in c.nouns)
            self._adjs = _Pool.of([a for a, _ in c.adjectives], [f for _, f in c.adjectives])
            self._verbs = _Pool.of([v for v, _, _ in c.verbs], [f for _, _, f in c.verbs])
            self._pasts = tuple(p for _, p, _ in c.verbs)
            self.templates = EN_TEMPLATES
        else:
            words = lexicon.content_words(language, CARRIER_WORDS)
            self._words = _Pool.of([w for w, _ in words], [f for _, f in words])
            self.templates = CARRIER_TEMPLATES[language]

    def _fill(self, slot: str, rng: random.Random) -> str:
        if self.language != "en":
            return self._words.words[self._words.draw(rng)]
        if slot in _EN_CLOSED:
            return rng.choice(_EN_CLOSED[slot])
        if slot in ("N", "NS", "aN"):
            i = self._nouns.draw(rng)
            word = self._plurals[i] if slot == "NS" else self._singulars[i]
            return f"{_article(word)} {word}" if slot == "aN" else word
        if slot in ("A", "aA"):
            word = self._adjs.words[self._adjs.draw(rng)]
            return f"{_article(word)} {word}" if slot == "aA" else word
        if slot in ("V", "VD"):
            i = self._verbs.draw(rng)
            return self._pasts[i] if slot == "VD" else self._verbs.words[i]
        raise KeyError(slot)

    def sample(self, rng: random.Random) -> str:
        out = rng.choice(self.templates)
        while "{" in out:
            start = out.index("{")
            end = out.index("}", start)
            out = out[:start] + self._fill(out[start + 1:end], rng) + out[end + 1:]
        return " ".join(out.split())

    def vocabulary(self) -> list[str]:
        """Every word a sentence of this grammar can contain."""
        words: set[str] = set()
        for t in self.templates:
            words.update(w for w in t.split() if "{" not in w)
        if self.language == "en":
            for values in _EN_CLOSED.values():
                for v in values:
                    words.update(v.split())
            words.update(("a", "an"), self._singulars, self._plurals, self._adjs.words, self._verbs.words,
                         self._pasts)
        else:
            words.update(self._words.words)
        return sorted(words)


@lru_cache(maxsize=8)
def large_grammar(language: str) -> LargeGrammar:
    return LargeGrammar(language)
