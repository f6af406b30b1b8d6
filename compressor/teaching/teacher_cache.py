"""Teacher outputs for distillation: batched, per utterance, or cached once per utterance.

A frozen teacher whose inputs do not change between epochs (a text teacher always; a speech teacher when no
augmentation touches its inputs) gives the same outputs every epoch. With ``cache: true`` a distillation
strategy runs it once per utterance and reads its outputs back in later epochs and on resume. Entries live in
``<run dir>/teacher_cache/`` (or ``cache_dir``), one file per (teacher, what is distilled), named by a hash of
the teacher's weights; each entry is keyed by the utterance id and stores a hash of the teacher's inputs for
that utterance. An entry is used only when both hashes match; anything else (another teacher's file, changed
inputs) is recomputed, never reused.

**Integrity.** The file describes its producer (teacher name, weights hash, signature) and every entry carries a
SHA-256 over that description, its input hash and its values. On reading, an entry whose checksum, names, types
or shapes do not hold (tampered values, a forged weights field, another teacher's entries) is dropped and
recomputed, and one line says how many; it is never used.

**Exactness.** A cached entry is the teacher's output for that utterance computed on its own (a batch of one,
no padding), so it depends on the utterance alone -- not on which utterances shared its batch. Running the
teacher with ``teacher_batching: utterance`` without a cache computes exactly the same values, so a cached run
ends bit-identical to such an uncached run. The default uncached path (``teacher_batching: batch``) runs the
teacher once per training batch, which is faster without a cache but rounds differently as batch
composition changes (float32 GEMMs of another shape; for all-MiniLM-L6-v2 about 2e-6) and, for teachers that
do not mask padding (a bidirectional RNN), gives mathematically different outputs.

Strategies use :class:`TeacherOutputs` (see ``logit_kd`` and ``representation_kd``) and validate the option
with :func:`check_cache`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from compressor.core.checkpoint import save_atomic
from compressor.core.errors import UserError
from compressor.core.sequences import split_batch

if TYPE_CHECKING:
    from compressor.core.context import StageContext
    from compressor.spec import CheckContext

#: name -> (values, lengths): values (B, ...) per utterance, or a padded sequence (B, T, ...) with its lengths
Targets = dict[str, tuple[torch.Tensor, torch.Tensor | None]]
Batching = Literal["batch", "utterance"]
FORMAT = 2


def weights_hash(model: nn.Module) -> str:
    """SHA-1 over every tensor of the model's state dict (names, dtypes, shapes, bytes)."""
    h = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _hash_value(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for v in value:
            _hash_value(h, v)
        h.update(b"]")
    else:
        h.update(repr(value).encode())


def inputs_hash(part: dict[str, Any]) -> str:
    """Hash of one utterance's inputs (everything in ``part`` but its id)."""
    h = hashlib.sha1()
    for key in sorted(k for k in part if k != "ids"):
        h.update(f"{key}=".encode())
        _hash_value(h, part[key])
    return h.hexdigest()


def entry_checksum(producer: dict[str, Any], key: str, values: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the producer's description, the utterance's input hash and its values (names, dtypes,
    shapes, bytes)."""
    h = hashlib.sha256(json.dumps(producer, sort_keys=True).encode())
    h.update(f"|{key}|".encode())
    for name in sorted(values):
        h.update(f"{name}=".encode())
        _hash_value(h, values[name])
    return h.hexdigest()


def _valid_entry(entry: Any, kinds: dict[str, bool], producer: dict[str, Any]) -> bool:
    """An entry as this producer writes it: names and kinds as the file says, tensors, the checksum right."""
    if not isinstance(entry, dict) or not isinstance(entry.get("input"), str):
        return False
    values = entry.get("values")
    if not isinstance(values, dict) or set(values) != set(kinds):
        return False
    for name, is_sequence in kinds.items():
        v = values[name]
        if not isinstance(v, torch.Tensor) or not v.is_floating_point() or (is_sequence and v.dim() < 1):
            return False
    return entry.get("sha256") == entry_checksum(producer, entry["input"], values)


def _row(targets: Targets, i: int) -> dict[str, torch.Tensor]:
    """Utterance ``i`` of batched targets, sequences cut to their length (what a cache entry stores)."""
    out = {}
    for name, (values, lengths) in targets.items():
        row = values[i]
        if lengths is not None:
            row = row[: int(lengths[i])]
        out[name] = row.detach().cpu().clone()
    return out


def _assemble(rows: list[dict[str, torch.Tensor]], kinds: dict[str, bool], device: torch.device) -> Targets:
    out: Targets = {}
    for name, is_sequence in kinds.items():
        values = [r[name] for r in rows]
        if not is_sequence:
            out[name] = (torch.stack(values).to(device), None)
            continue
        lengths = torch.tensor([v.shape[0] for v in values], dtype=torch.int64)
        padded = values[0].new_zeros((len(values), int(lengths.max()), *values[0].shape[1:]))
        for i, v in enumerate(values):
            padded[i, : v.shape[0]] = v
        out[name] = (padded.to(device), lengths.to(device))
    return out


class TeacherOutputs:
    """What a frozen teacher gives a distillation strategy for each batch, computed as configured.

    :param model: the teacher's name in ``ctx.models``.
    :param compute: ``compute(batch) -> Targets``: run the teacher and pick out what is distilled.
    :param cache: keep per-utterance outputs (in memory and on disk) and reuse them.
    :param batching: ``batch`` (one teacher forward per training batch) or ``utterance`` (one per utterance,
        the canonical outputs a cache holds). ``cache`` implies ``utterance``.
    :param signature: describes what ``compute`` returns (logits key, representation points): part of the file
        name, so a changed spec never reads another configuration's entries.
    :param input_keys: the batch keys the teacher reads (hashed per utterance); None = every key.
    """

    def __init__(self, model: str, compute: Callable[[dict[str, Any]], Targets], *, cache: bool = False,
                 batching: Batching = "batch", signature: Any = "", input_keys: tuple[str, ...] | None = None,
                 cache_dir: str | Path | None = None) -> None:
        self.model = model
        self.compute = compute
        self.cache = cache
        self.per_utterance = cache or batching == "utterance"
        self.signature = hashlib.sha1(json.dumps(signature, sort_keys=True, default=str).encode()).hexdigest()[:10]
        self.input_keys = input_keys
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.entries: dict[str, dict[str, Any]] = {}
        self.kinds: dict[str, bool] | None = None
        self.path: Path | None = None
        self.weights: str | None = None
        self.dirty = False
        self.hits = self.misses = 0
        self.note: str | None = None

    # -- stage start / end ---------------------------------------------------------------------------
    def start(self, ctx: StageContext) -> None:
        """Hash the teacher's weights and load a matching cache file, if any."""
        if not self.cache:
            return
        self.weights = weights_hash(ctx.model(self.model))
        folder = self.cache_dir or (ctx.run_dir / "teacher_cache")
        rank = f"-rank{ctx.rank}" if ctx.world_size > 1 else ""
        self.path = folder / f"{self.model}-{self.weights[:16]}-{self.signature}{rank}.pt"
        self.entries, self.note = {}, None
        if self.path.exists():
            self._read(self.path)
        if self.note:
            from compressor.core.progress import say

            say(f"teacher cache {self.path}: {self.note}")

    def _producer(self) -> dict[str, Any]:
        return {"model": self.model, "weights": self.weights, "signature": self.signature}

    def _read(self, path: Path) -> None:
        """Load the entries of ``path`` that prove they are this teacher's; note what was dropped."""
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged file: recompute
            self.note = f"unreadable cache file ignored ({type(e).__name__}): recomputed"
            return
        if not isinstance(stored, dict) or stored.get("format") != FORMAT:
            self.note = "cache file of another format: recomputed"
            return
        producer = self._producer()
        kinds, entries = stored.get("kinds"), stored.get("entries")
        if (stored.get("producer") != producer or not isinstance(kinds, dict) or not isinstance(entries, dict)
                or not all(isinstance(k, str) and isinstance(v, bool) for k, v in kinds.items())):
            self.note = "cache file written by another teacher or configuration: recomputed"
            return
        good = {str(uid): e for uid, e in entries.items() if _valid_entry(e, kinds, producer)}
        self.entries, self.kinds = good, dict(kinds) if kinds else None
        if len(good) < len(entries):
            self.note = (f"{len(entries) - len(good)} of {len(entries)} entries failed verification (checksum, "
                         f"producer, type or shape): recomputed")
            self.dirty = True

    def flush(self) -> None:
        """Write new entries (atomically) so later epochs, stages and a resumed run read them back."""
        if not self.cache or not self.dirty or self.path is None:
            return
        save_atomic({"format": FORMAT, "producer": self._producer(), "kinds": self.kinds,
                     "entries": self.entries}, self.path)
        self.dirty = False

    # -- per batch -----------------------------------------------------------------------------------
    def __call__(self, ctx: StageContext, batch: dict[str, Any]) -> Targets:
        if not self.per_utterance:
            return self.compute(batch)
        if self.cache and "ids" not in batch:
            raise UserError("teacher-output caching needs utterance ids (batch key 'ids'), which this data lacks")
        parts = split_batch(batch, self.input_keys)
        rows: list[dict[str, torch.Tensor]] = []
        ids = batch.get("ids") or [None] * len(parts)
        for uid, part in zip(ids, parts):
            key = inputs_hash(part) if self.cache else ""
            entry = self.entries.get(str(uid)) if self.cache else None
            if entry is not None and entry["input"] == key:
                rows.append(entry["values"])
                self.hits += 1
                continue
            targets = self.compute(part)
            if self.kinds is None:
                self.kinds = {name: lengths is not None for name, (_, lengths) in targets.items()}
            row = _row(targets, 0)
            rows.append(row)
            self.misses += 1
            if self.cache:
                self.entries[str(uid)] = {"input": key, "values": row,
                                          "sha256": entry_checksum(self._producer(), key, row)}
                self.dirty = True
        assert self.kinds is not None
        return _assemble(rows, self.kinds, ctx.device)

    def hit_rate(self) -> float:
        """Share of utterances read from the cache since the last call (and reset the counters)."""
        total = self.hits + self.misses
        rate = self.hits / total if total else 0.0
        self.hits = self.misses = 0
        return rate


def check_cache(check: CheckContext, teachers: list[str], key: str = "cache") -> None:
    """Refuse ``cache: true`` where teacher outputs would change between epochs (validation time)."""
    from compressor.core.strategy import Augmentation

    stage = check.stage
    info = check.data_info()
    keys = info.get("batch_keys")
    if keys is not None and "ids" not in keys:
        raise check.error("cache: true needs utterance ids, and this stage's data gives none (no 'ids' in its "
                          "batches)", key)
    plugins = check.stage_strategies()
    for teacher in teachers:
        if teacher in stage.train or teacher == stage.forward_model:
            raise check.error(f"cache: true needs a frozen teacher, but '{teacher}' is trained in this stage "
                              f"(list it under frozen)", key)
        reads = check.model_reads(teacher, optional=True)
        for j, cls, args in plugins:
            aug: Augmentation = cls.augments(args)
            name = stage.plugins[j].name
            where = f"plugin '{name}' (stages[{check.stage_index}].plugins[{j}])"
            if teacher in aug.models:
                raise check.error(f"cache: true, but {where} perturbs the teacher '{teacher}' inside: its outputs "
                                  f"change every epoch", key)
            touched = sorted(aug.keys if reads is None else set(aug.keys) & set(reads))
            if touched:
                why = (f"which teacher '{teacher}' reads" if reads is not None else
                       f"and teacher '{teacher}' does not declare which batch keys it reads")
                raise check.error(f"cache: true, but {where} rewrites batch key '{touched[0]}' {why}: its "
                                  f"outputs change every epoch", key)
        if info.get("augmented") and (reads is None or "features" in reads or "audio" in reads):
            raise check.error(f"cache: true, but the data's waveform augmentation changes the features teacher "
                              f"'{teacher}' reads every epoch", key)
