"""The ASR token convention shared by every model family: blank is the last id (NeMo/sherpa-onnx layout)."""

from __future__ import annotations

from typing import Any


def vocabulary_size(family: str, vocab_size: int | None, info: dict[str, Any]) -> int:
    """The model's output size from its args or the data, checked against the blank-last convention."""
    vocab_size = vocab_size or info.get("vocab_size")
    if vocab_size is None:
        raise ValueError(f"{family} needs vocab_size (from its args or the data's info)")
    blank = info.get("blank_id")
    if blank is not None and int(blank) != int(vocab_size) - 1:
        raise ValueError(f"{family} expects the blank to be the last token id ({int(vocab_size) - 1}), "
                         f"the data says blank_id={blank}")
    return int(vocab_size)
