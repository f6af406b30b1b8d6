"""Large word lists for the ``large`` read-speech setting, taken from word lists that ship inside pip packages.

* ``wordfreq`` (en, de, es, ru): the language's most frequent words, in frequency order, with frequencies.
* ``lemminflect`` (English only): the parts of speech a word form can be (its Spec-lexicon lemmas) and its
  inflections (plural nouns, past-tense verbs), so English sentences can have real syntax.

The lists are a pure function of the installed package versions (:func:`lexicon_versions` goes into the
corpus cache key), so a corpus built from them is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata

from compressor.core.errors import UserError
from compressor.data.text import ALPHABETS

#: How many of wordfreq's most frequent words each language's lists are drawn from.
TOP_WORDS = 30000
#: The most frequent words of a language are mostly function words: they never fill an open slot.
FUNCTION_WORDS_TOP = 150
VOWELS = {"en": "aeiouy", "de": "aeiouyäöü", "es": "aeiouáéíóúü", "ru": "аеёиоуыэюя"}


def lexicon_versions() -> dict[str, str]:
    """Versions of the packages the word lists come from (part of a large corpus's identity)."""
    out = {}
    for pkg in ("wordfreq", "lemminflect"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def _wordfreq():  # noqa: ANN202 - the module
    try:
        import wordfreq
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise UserError("the large read-speech setting needs the 'wordfreq' package (pip install wordfreq)") from e
    return wordfreq


@lru_cache(maxsize=8)
def frequent_words(language: str, n: int = TOP_WORDS) -> tuple[tuple[str, float], ...]:
    """``(word, frequency)`` for the ``n`` most frequent words of ``language`` that are spoken as words:
    letters of the language only, at least two letters and one vowel (no abbreviations spelt out)."""
    wf = _wordfreq()
    letters = set(ALPHABETS[language]) - {"'"}
    vowels = set(VOWELS[language])
    out = []
    for w in wf.top_n_list(language, n, wordlist="best"):
        if len(w) < 2 or not set(w) <= letters or not set(w) & vowels:
            continue
        out.append((w, wf.word_frequency(w, language, wordlist="best")))
    return tuple(out)


@lru_cache(maxsize=8)
def content_words(language: str, count: int) -> tuple[tuple[str, float], ...]:
    """The ``count`` most frequent words of ``language`` after its function words (the most frequent
    :data:`FUNCTION_WORDS_TOP`) and words of fewer than three letters."""
    wf = _wordfreq()
    words = frequent_words(language)
    # English loanwords ("love", "white") would be spoken with the language's rules: leave them out
    out = [(w, f) for w, f in words[FUNCTION_WORDS_TOP:]
           if len(w) >= 3 and (language == "en" or wf.word_frequency(w, "en", wordlist="best") < f)]
    if len(out) < count:
        raise UserError(f"wordfreq has only {len(out)} content words for '{language}', {count} asked")
    return tuple(out[:count])


@dataclass(frozen=True)
class EnglishClasses:
    """English open word classes with their inflections: each entry is ``(form, frequency)``."""

    nouns: tuple[tuple[str, str, float], ...]  # (singular, plural, frequency)
    adjectives: tuple[tuple[str, float], ...]
    verbs: tuple[tuple[str, str, float], ...]  # (base, past tense, frequency)


@lru_cache(maxsize=4)
def english_classes(nouns: int, adjectives: int, verbs: int) -> EnglishClasses:
    """The most frequent English words whose only part of speech (in lemminflect's lexicon) is noun,
    adjective or verb, in their base form, with plural / past tense from lemminflect."""
    try:
        import lemminflect
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise UserError("the large English read-speech setting needs 'lemminflect' (pip install lemminflect)") from e
    wf = _wordfreq()
    n_out: list[tuple[str, str, float]] = []
    a_out: list[tuple[str, float]] = []
    v_out: list[tuple[str, str, float]] = []
    for w, f in frequent_words("en")[FUNCTION_WORDS_TOP:]:
        if len(w) < 3 or "'" in w:
            continue
        lemmas = {pos: forms for pos, forms in lemminflect.getAllLemmas(w).items() if pos != "PROPN"}
        if len(lemmas) != 1 or next(iter(lemmas.values())) != (w,):
            continue  # ambiguous ("run", "light") or inflected ("found" of "find") forms stay out
        pos = next(iter(lemmas))
        if pos == "NOUN" and len(n_out) < nouns:
            plural = lemminflect.getInflection(w, "NNS")
            # a countable noun: its plural is a word in its own right ("moneys", "eaches" are not)
            if plural and plural[0] != w and wf.word_frequency(plural[0], "en", wordlist="best") >= 0.05 * f:
                n_out.append((w, plural[0], f))
        elif pos == "ADJ" and len(a_out) < adjectives:
            a_out.append((w, f))
        elif pos == "VERB" and len(v_out) < verbs:
            past = lemminflect.getInflection(w, "VBD")
            if past and past[0].isalpha():
                v_out.append((w, past[0], f))
        if len(n_out) >= nouns and len(a_out) >= adjectives and len(v_out) >= verbs:
            break
    if len(n_out) < nouns or len(a_out) < adjectives or len(v_out) < verbs:
        raise UserError(f"lemminflect/wordfreq give {len(n_out)} nouns, {len(a_out)} adjectives, {len(v_out)} "
                        f"verbs; {nouns}, {adjectives}, {verbs} asked")
    return EnglishClasses(tuple(n_out), tuple(a_out), tuple(v_out))
