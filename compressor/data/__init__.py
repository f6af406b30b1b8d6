"""Data: datasets, features, tokenizers and batching."""

from compressor.data.base import DataModule

__all__ = ["DataModule"]
