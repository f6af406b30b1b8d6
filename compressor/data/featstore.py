"""Feature storage: every utterance's fbank frames in one float32 file, memory-mapped.

Extraction streams features to disk one utterance at a time, so a large corpus never has to fit in memory;
readers (the training process and every DataLoader worker) map the file and copy out one utterance per item.
The index (``<key>.json``: offsets, lengths, per-utterance errors) is written last, so its presence marks a
complete cache entry. It describes what produced the features and holds a SHA-256 of the feature file and of
its own content; :func:`load_store` checks both (one pass over the file, not per frame), so random bytes,
rescaled features or shifted lengths are rebuilt, with one line said, rather than used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compressor.core.checkpoint import file_sha256
from compressor.core.errors import raise_disk_error
from compressor.core.interrupts import pid_alive
from compressor.core.progress import say

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


def _index_digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "index_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def load_store(data: Path, index: Path, n: int, producer: Any = None) -> tuple[FeatureStore, Errors] | None:
    """A complete, verified cache entry of ``n`` utterances written by ``producer``, or ``None``: absent, or
    damaged (one line says which file and why; the caller rebuilds it)."""
    if not index.exists():
        return None
    problem = "its index is unreadable"
    try:
        meta = json.loads(index.read_text(encoding="utf-8"))
        if meta.get("index_sha256") != _index_digest(meta):
            problem = f"{index} does not match its checksum"
        elif meta.get("n") != n or meta.get("dim") != DIM or meta.get("producer") != producer:
            problem = f"{index} was written for other utterances or another front end"
        elif not data.exists() or os.path.getsize(data) != 4 * DIM * sum(meta["lengths"]):
            problem = f"{data} is missing or has the wrong size"
        elif offsets_ok(meta["offsets"], meta["lengths"]) and file_sha256(data) == meta.get("sha256"):
            errors = [tuple(e) if e else None for e in meta["errors"]]
            return FeatureStore(meta["offsets"], meta["lengths"], path=data), errors  # type: ignore[return-value]
        else:
            problem = f"{data} does not match its checksum"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    say(f"feature cache {index.stem}: {problem}: rebuilding it")
    return None


def offsets_ok(offsets: Sequence[int], lengths: Sequence[int]) -> bool:
    """Offsets that lay the utterances end to end, as :func:`write_store` writes them."""
    pos = 0
    for start, n in zip(offsets, lengths, strict=True):
        if start != pos or n < 0:
            return False
        pos += n
    return True


def clean_stale(folder: Path) -> None:
    """Remove the ``*.tmp<pid>`` files of writers whose process is gone."""
    for p in folder.glob("*.tmp*"):
        pid = p.name.rsplit(".tmp", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            p.unlink(missing_ok=True)


def write_store(
    items: Sequence[Any],
    compute: Callable[[Any], torch.Tensor],
    data: Path | None,
    index: Path | None,
    is_error: Callable[[BaseException], tuple[str, str] | None],
    producer: Any = None,
) -> tuple[FeatureStore, Errors]:
    """Compute ``compute(item)`` for every item, streaming to ``data`` (or keeping them in memory when
    ``data`` is None). An exception that ``is_error`` maps to ``(reason, message)`` marks a bad item (zero
    frames); any other exception propagates. ``producer`` (plain JSON) describes what computes the features:
    it is recorded in the index and must match when the entry is read back."""
    offsets: list[int] = []
    lengths: list[int] = []
    errors: Errors = []
    arrays: list[np.ndarray] | None = [] if data is None else None
    tmp = data.with_name(data.name + f".tmp{os.getpid()}") if data is not None else None
    out = open(tmp, "wb") if tmp is not None else None  # noqa: SIM115 - closed below
    digest = hashlib.sha256()
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
                digest.update(feats.tobytes())
            else:
                assert arrays is not None
                arrays.append(feats)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise_disk_error(e, tmp)
        raise
    finally:
        if out is not None:
            out.close()
    if data is None:
        return FeatureStore(offsets, lengths, arrays=arrays), errors
    assert tmp is not None and index is not None
    tmp.replace(data)
    itmp = index.with_name(index.name + f".tmp{os.getpid()}")
    meta = {"n": len(items), "dim": DIM, "producer": producer, "offsets": offsets, "lengths": lengths,
            "errors": [list(e) if e else None for e in errors], "sha256": digest.hexdigest()}
    meta["index_sha256"] = _index_digest(meta)
    try:
        itmp.write_text(json.dumps(meta), encoding="utf-8")
    except BaseException:
        itmp.unlink(missing_ok=True)
        raise
    itmp.replace(index)
    return FeatureStore(offsets, lengths, path=data), errors
