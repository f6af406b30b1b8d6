"""Data: datasets of the user's corpus formats, features and their cache, tokenizers, mixing, augmentation and
batching (the synthetic corpora are :mod:`compressor.corpora`).

``DataModule`` loads on first use, so that ``compressor data --help`` does not wait for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compressor.data.base import DataModule

__all__ = ["DataModule"]


def __getattr__(name: str) -> Any:
    if name == "DataModule":
        from compressor.data.base import DataModule

        return DataModule
    raise AttributeError(f"module 'compressor.data' has no attribute '{name}'")
