"""Where the data layer caches what it computes (features, tokenizers, synthetic corpora)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$COMPRESSOR_CACHE`` or ``~/.cache/compressor``."""
    env = os.environ.get("COMPRESSOR_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/compressor").expanduser()
