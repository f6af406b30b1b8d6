"""Transcript normalisation and per-language alphabets.

Transcripts are lower-cased, punctuation other than the apostrophe is dropped and whitespace collapsed. A
transcript with a character outside its language's alphabet (after normalisation) is *out of alphabet*:
readers skip it (or raise under ``strict: true``) so a model never sees a token it cannot emit.
"""

from __future__ import annotations

import re
import unicodedata

from compressor.core.errors import UserError

#: Letters of each language (lower case); the word separator is always the space.
ALPHABETS: dict[str, str] = {
    "en": "abcdefghijklmnopqrstuvwxyz'",
    "de": "abcdefghijklmnopqrstuvwxyzäöüß'",
    "es": "abcdefghijklmnopqrstuvwxyzáéíóúñü'",
    "ru": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя'",
}

LANGUAGES = tuple(ALPHABETS)

_PUNCT = re.compile(r"[\"“”„«»!?¡¿.,;:()\[\]{}–—\-/]+")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lower-case, NFC, unify apostrophes, drop punctuation, collapse spaces."""
    text = unicodedata.normalize("NFC", text).lower()
    text = text.replace("’", "'").replace("`", "'")
    text = _PUNCT.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def alphabet(language: str) -> str:
    try:
        return ALPHABETS[language]
    except KeyError:
        raise UserError(f"unknown language '{language}' (languages: {', '.join(LANGUAGES)})") from None


def out_of_alphabet(text: str, language: str) -> list[str]:
    """The characters of ``text`` (normalised) that are neither letters of ``language`` nor a space."""
    allowed = set(alphabet(language)) | {" "}
    return sorted({c for c in text if c not in allowed})
