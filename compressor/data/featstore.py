"""Feature storage: every utterance's fbank frames in one float32 file, memory-mapped.

Extraction streams features to disk one utterance at a time, so a large corpus never has to fit in memory;
readers (the training process and every DataLoader worker) map the file and copy out one utterance per item.
The index (``<key>.json``: offsets, lengths, per-utterance errors) is written last, so its presence marks a
complete cache entry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

DIM = 80


class FeatureStore:
    """A sequence of ``(T_i, 80)`` float32 tensors, memory-mapped from ``path`` or held in memory."""

    def __init__(
        self,
        offsets: Sequence[int],
        lengths: Sequence[int],
        *,
        path: Path | None = None,
        arrays: list[np.ndarray] | None = None,
        index: Sequence[int] | None = None,
    ) -> None:
        self.path = path
        self.offsets = list(offsets)
        self._lengths = list(lengths)
        self.arrays = arrays
        self.index = list(index) if index is not None else list(range(len(self._lengths)))
        self._mm: np.memmap | None = None

    # -- sequence --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor:
        j = self.index[i]
        if self.arrays is not None:
            return torch.from_numpy(self.arrays[j])
        start, n = self.offsets[j], self._lengths[j]
        return torch.from_numpy(np.array(self._map()[start : start + n]))

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[i] for i in range(len(self)))

    @property
    def lengths(self) -> list[int]:
        return [self._lengths[j] for j in self.index]

    def select(self, indices: Sequence[int]) -> FeatureStore:
        """A view of the utterances at ``indices`` (positions in this store)."""
        return FeatureStore(
            self.offsets,
            self._lengths,
            path=self.path,
            arrays=self.arrays,
            index=[self.index[i] for i in indices],
        )

    # -- memory map, reopened in every process ---------------------------------------------------
    def _map(self) -> np.memmap:
        if self._mm is None:
            assert self.path is not None
            total = os.path.getsize(self.path) // (4 * DIM)
            self._mm = np.memmap(self.path, dtype=np.float32, mode="r", shape=(max(total, 1), DIM))
        return self._mm

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mm"] = None
        return state


Errors = list["tuple[str, str] | None"]


def load_store(data: Path, index: Path, n: int) -> tuple[FeatureStore, Errors] | None:
    """A complete cache entry of ``n`` utterances, or ``None`` (absent, damaged or for other utterances)."""
    try:
        meta = json.loads(index.read_text(encoding="utf-8"))
        if meta.get("n") != n or meta.get("dim") != DIM or not data.exists():
            return None
        if os.path.getsize(data) != 4 * DIM * sum(meta["lengths"]):
            return None
        errors = [tuple(e) if e else None for e in meta["errors"]]
        return FeatureStore(meta["offsets"], meta["lengths"], path=data), errors  # type: ignore[return-value]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_store(
    items: Sequence[Any],
    compute: Callable[[Any], torch.Tensor],
    data: Path | None,
    index: Path | None,
    is_error: Callable[[BaseException], tuple[str, str] | None],
) -> tuple[FeatureStore, Errors]:
    """Compute ``compute(item)`` for every item, streaming to ``data`` (or keeping them in memory when
    ``data`` is None). An exception that ``is_error`` maps to ``(reason, message)`` marks a bad item (zero
    frames); any other exception propagates."""
    offsets: list[int] = []
    lengths: list[int] = []
    errors: Errors = []
    arrays: list[np.ndarray] | None = [] if data is None else None
    tmp = data.with_name(data.name + f".tmp{os.getpid()}") if data is not None else None
    out = open(tmp, "wb") if tmp is not None else None  # noqa: SIM115 - closed below
    try:
        pos = 0
        for item in items:
            try:
                feats = compute(item).detach().to(torch.float32).contiguous().numpy()
                err = None
            except Exception as e:  # noqa: BLE001 - classified by is_error
                err = is_error(e)
                if err is None:
                    raise
                feats = np.zeros((0, DIM), dtype=np.float32)
            offsets.append(pos)
            lengths.append(int(feats.shape[0]))
            errors.append(err)
            pos += int(feats.shape[0])
            if out is not None:
                out.write(feats.tobytes())
            else:
                assert arrays is not None
                arrays.append(feats)
    finally:
        if out is not None:
            out.close()
    if data is None:
        return FeatureStore(offsets, lengths, arrays=arrays), errors
    assert tmp is not None and index is not None
    tmp.replace(data)
    itmp = index.with_name(index.name + f".tmp{os.getpid()}")
    itmp.write_text(
        json.dumps(
            {
                "n": len(items),
                "dim": DIM,
                "offsets": offsets,
                "lengths": lengths,
                "errors": [list(e) if e else None for e in errors],
            }
        ),
        encoding="utf-8",
    )
    itmp.replace(index)
    return FeatureStore(offsets, lengths, path=data), errors
