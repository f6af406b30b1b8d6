"""When speech from several datasets can meet one model: same features, one alphabet, one tokenizer.

Used by the ``mix`` dataset (target + source data interleaved) and by evaluation on named sets. Features
must be computed the same way (sample rate, front end, dimension, normalisation): a model trained on one
front end reads another's features as noise. Transcripts must fit the model's alphabet; they are then
tokenised again with the model's own tokenizer so that every set speaks the model's vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compressor.core.errors import UserError
from compressor.data.speech import SpeechDataModule, SpeechSplit
from compressor.data.text import ALPHABETS, out_of_alphabet
from compressor.data.tokenizers import Tokenizer

#: info keys that must agree for features to be interchangeable, and how to name them in messages
FEATURE_FACTS = (("sample_rate", "sample rate"), ("frontend", "front end"), ("feature_dim", "feature dimension"),
                 ("normalize_type", "normalisation"))


def feature_clash(reference: dict[str, Any], other: dict[str, Any]) -> tuple[str, str] | None:
    """``(info key, message)`` for the first feature fact on which ``other`` differs from ``reference``."""
    for key, label in FEATURE_FACTS:
        a, b = reference.get(key), other.get(key)
        if a is not None and b is not None and _canon(key, a) != _canon(key, b):
            return key, f"{label} {b!r} differs from {a!r}"
    return None


def _canon(key: str, value: Any) -> Any:
    if key == "frontend" and value == "nemo":  # the data layer's alias of sherpa-onnx's nemo_transducer
        return "nemo_transducer"
    if key == "normalize_type" and value in ("none", None):
        return ""
    return value


def alphabet_clash(model_language: str, other_language: str) -> str | None:
    """Letters of ``other_language`` that ``model_language``'s alphabet lacks, or None when it covers them."""
    missing = sorted(set(ALPHABETS.get(other_language, "")) - set(ALPHABETS.get(model_language, "")))
    return "".join(missing) or None


def retokenize(module: SpeechDataModule, tokenizer: Tokenizer, language: str, what: str,
               splits: Sequence[str] | None = None) -> None:
    """Re-encode every transcript of ``module`` with ``tokenizer``; refuse any outside ``language``."""
    for split in splits or list(module.datasets):
        ds = module.dataset(split)
        if not isinstance(ds, SpeechSplit):
            raise UserError(f"{what}: split '{split}' is not speech data with transcripts")
        bad = [u.text for u in ds.utts if out_of_alphabet(u.text, language)]
        if bad:
            raise UserError(f"{what}: {len(bad)} '{split}' transcripts have characters outside the model's "
                            f"'{language}' alphabet (first: {bad[0]!r})")
        ds.tokens = [tokenizer.encode(u.text) for u in ds.utts]
    module.tokenizer = tokenizer
    module.info.update(tokens=list(tokenizer.tokens), vocab_size=tokenizer.vocab_size, blank_id=tokenizer.blank_id,
                       tokenizer=tokenizer.kind)
