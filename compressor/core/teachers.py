"""External teachers: what the families that load models made elsewhere share.

A family that loads a pre-trained model from a file (``hf_speech``, ``nemo_ctc``) registers with two extras:

* ``units=fn(args) -> list[str]``: the model's output units in the project's convention (blank last, ``▁``
  between words), read from its files without building it. ``tokenizer: {from_teacher: NAME}`` in the data
  adopts them, and ``logit_kd`` compares them with the student's before any work.
* ``reads=("audio", "audio_lengths")`` when it reads 16 kHz waveforms: the data then loads them
  (:meth:`compressor.data.speech.SpeechDataModule.request`).

Its module carries ``source_hash``, a SHA-256 over the files it was loaded from, so cached teacher outputs
(:mod:`compressor.teaching.teacher_cache`) are keyed by the teacher's files as well as its weights. Once an epoch has
cached every output, :func:`offload_cached_teacher` moves such a frozen teacher's weights out of the process's
memory into a memory-mapped file: the teacher stays a complete module (checkpoints, evaluation and a cache miss
still work, reading its pages back on demand), but its weights no longer sit in memory beside the student's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from compressor.core.errors import SpecError, UserError, did_you_mean
from compressor.core.registry import Registry

if TYPE_CHECKING:
    from pydantic import BaseModel
    from torch import nn

    from compressor.core.context import StageContext


def files_hash(paths: Iterable[Path]) -> str:
    """SHA-256 over the names and bytes of ``paths`` (sorted by name)."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: q.name):
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def safe_torch_load(source: str | Path | IO[bytes], what: str, hint: str = "") -> Any:
    """``torch.load(source, weights_only=True)`` on the CPU; a pickle that would run code or build objects, or an
    unreadable file, is a one-line :class:`UserError` naming ``what`` (with ``hint`` on what to do)."""
    import pickle

    import torch

    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = " ".join(str(e).split())[:160]
        raise UserError(f"{what} is a pickle that torch.load(weights_only=True) refuses (it would run code or "
                        f"build objects): {first}{hint}") from None
    except Exception as e:
        raise UserError(f"{what} is not a readable weights file ({type(e).__name__})") from None


def offload(model: nn.Module, path: Path) -> bool:
    """Back ``model``'s weights (on the CPU) by ``path``, memory-mapped: written once, loaded with
    ``torch.load(mmap=True, weights_only=True)`` and assigned in place of the in-memory tensors, whose memory is
    freed. The mapped pages are clean file pages the OS reclaims under pressure. False if already done or not on
    the CPU."""
    import gc

    import torch

    from compressor.core.checkpoint import save_atomic

    if getattr(model, "_offloaded_to", None) == str(path):
        return False
    state = model.state_dict()
    if any(t.device.type != "cpu" for t in state.values()):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(state, path)
    del state
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True, mmap=True), assign=True)
    model._offloaded_to = str(path)  # type: ignore[assignment]
    gc.collect()
    _trim_heap()
    return True


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc keeps it otherwise); nothing elsewhere."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)  # type: ignore[arg-type]
    except (OSError, AttributeError, TypeError):
        pass


def offload_cached_teacher(ctx: StageContext, name: str) -> bool:
    """After an epoch whose teacher outputs are all cached: :func:`offload` the frozen external teacher ``name``
    (one loaded from files, with ``source_hash``) to ``<run dir>/offloaded/``. Project models are left as they
    are."""
    model = ctx.model(name)
    if getattr(model, "source_hash", None) is None or name in ctx.stage.train:
        return False
    if getattr(model, "weights_mapped", False):  # already file-backed (transformers' safetensors loading)
        return False
    rank = f"-rank{ctx.rank}" if ctx.world_size > 1 else ""
    return offload(model, ctx.run_dir / "offloaded" / f"{name}{rank}.pt")


def model_units(registry: Registry, spec: Any, model_args: dict[str, BaseModel], name: str) -> list[str] | None:
    """The output units model ``name`` declares (its family's ``units`` extra); None when its family declares
    nothing (a project model: its units are the data's), ``[]`` when it has no output units (Whisper)."""
    ms = spec.all_models()[name]
    units = registry.get("model", ms.name).extra.get("units")
    return None if units is None else list(units(model_args[name]) or [])


def resolve_vocabularies(registry: Registry, spec: Any, model_args: dict[str, BaseModel],
                         data: list[tuple[tuple, BaseModel | None]]) -> None:
    """Fill in the tokens of every ``tokenizer: {from_teacher: NAME}`` among the data arguments ``data``
    (``(key path, args)`` pairs), from model ``NAME``'s declared units; a :class:`SpecError` otherwise."""
    models = spec.all_models()
    for path, args in data:
        tok = getattr(args, "tokenizer", None)
        name = getattr(tok, "from_teacher", None)
        if name is None:
            continue
        where = path + ("tokenizer", "from_teacher")
        if name not in models:
            raise SpecError(f"no model named '{name}'{did_you_mean(name, models)}", where)
        try:
            units = model_units(registry, spec, model_args, name)
        except UserError as e:
            raise SpecError(str(e), ((name,) if name in ("teacher", "student") else ("models", name))) from None
        if not units:
            raise SpecError(f"model '{name}' ({models[name].name}) has no vocabulary of its own to adopt: "
                            f"from_teacher names a model loaded from files that carry one (hf_speech, nemo_ctc)",
                            where)
        tok.tokens = units

