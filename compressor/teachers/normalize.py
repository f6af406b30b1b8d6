"""Teacher transcripts onto a student's units: lower case, punctuation dropped, digits spelled out as words.

A pre-trained recogniser writes ``"Turn on 2 lights."``; a character or SentencePiece student trained on the
corpus's normalised text needs ``"turn on two lights"``. :func:`to_units` does that mapping (numbers through
``num2words``) and returns None when the result still has a character outside the student's alphabet, so the
caller can drop the utterance and count it.
"""

from __future__ import annotations

import re

from compressor.data.text import ALPHABETS, normalize

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?:st|nd|rd|th)?")
_NUM2WORDS_LANG = {"en": "en", "de": "de", "es": "es", "ru": "ru"}


def _spell(match: re.Match[str], language: str) -> str:
    from num2words import num2words

    token = match.group(0)
    lang = _NUM2WORDS_LANG.get(language, "en")
    ordinal = token[-2:] in ("st", "nd", "rd", "th")
    digits = token[:-2] if ordinal else token
    if re.fullmatch(r"\d{1,3}(,\d{3})+", digits):  # 1,000,000: thousands separators
        digits = digits.replace(",", "")
    digits = digits.replace(",", ".")
    try:
        if ordinal:
            return " " + num2words(int(digits), lang=lang, to="ordinal") + " "
        return " " + num2words(float(digits) if "." in digits else int(digits), lang=lang) + " "
    except (ValueError, NotImplementedError, OverflowError):
        return token


def spell_numbers(text: str, language: str = "en") -> str:
    """Digits -> words (``"2nd"`` -> ``"second"``, ``"1,000"`` -> ``"one thousand"``), hyphens kept apart."""
    out = _NUMBER.sub(lambda m: _spell(m, language), text)
    return out.replace("-", " ")


def to_units(text: str, language: str = "en", alphabet: str | None = None) -> str | None:
    """``text`` normalised as the corpus's transcripts are (lower case, no punctuation, numbers as words),
    or None when it is empty or has a character outside ``alphabet`` (default: the language's letters)."""
    letters = set(alphabet if alphabet is not None else ALPHABETS.get(language, ALPHABETS["en"]))
    text = normalize(spell_numbers(text.replace("%", " percent ").replace("&", " and "), language))
    text = " ".join(w.strip("'") for w in text.split() if w.strip("'"))
    if not text or any(ch not in letters for ch in text.replace(" ", "")):
        return None
    return text
