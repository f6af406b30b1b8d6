"""Atomic checkpoints and RNG state capture for exact resume."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compressor.core.errors import UserError, raise_disk_error
from compressor.core.interrupts import deferred


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def save_atomic(obj: Any, path: Path) -> None:
    """Write with torch.save to a temp file, fsync, rename over ``path``, fsync the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with deferred():  # a signal raised inside torch.save's C++ writer breaks it: deliver it after
        torch.save(obj, buffer)  # in memory: a full disk then fails a plain write, with its errno
    write_atomic(path, buffer.getbuffer())
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | memoryview | str) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, rename over ``path``: readers see all or nothing.
    A full or read-only disk raises :class:`~compressor.core.errors.DiskError` naming ``path``; no temp file stays."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with deferred():
            with open(tmp, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException as e:  # a full disk, a failing writer: no half-written file stays behind
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise_disk_error(e, path)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain containers only).

    Anything that is not a readable checkpoint (missing, a directory, empty, truncated, not a torch file, a
    pickle that would build objects) raises :class:`UserError` naming the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except OSError as e:
        raise UserError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a directory, not a file")
    if size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes)")
    try:
        with deferred():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise UserError(f"cannot load checkpoint {path}: not a readable torch checkpoint (damaged, truncated or "
                        f"another format; {type(e).__name__}: {first or 'unreadable'})") from None


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A model's weights from a file holding a state dict (or a checkpoint with a ``model`` entry)."""
    obj = load_checkpoint(path)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} does not hold a model state dict")
    for name, t in obj.items():
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise UserError(f"{path}: parameter '{name}' has {bad} non-finite values (NaN or inf) of {t.numel()}: "
                            f"these weights cannot be used")
    return obj


def mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """Why ``state`` does not load into ``model`` (missing or unexpected keys, other shapes), or None.

    Works on a model built on the meta device (only names and shapes are compared).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} is {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
              for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    problems = []
    if missing:
        problems.append(f"missing {few(missing)}")
    if unexpected:
        problems.append(f"unexpected {few(unexpected)}")
    if shapes:
        problems.append(few(shapes))
    return "; ".join(problems) or None


def load_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model``, or raise :class:`UserError` saying why it does not fit (``what``: where the
    weights come from and which model they are for)."""
    problem = mismatch(model, state)
    if problem:
        raise UserError(f"{what} does not match the model the spec builds: {problem}")
    model.load_state_dict(state)


RESUME_KINDS = ("mid_stage", "stage_end")


def check_resume_state(state: Any, path: Path, num_stages: int) -> dict[str, Any]:
    """``state`` if it is a resume point of a run with ``num_stages`` stages, else a :class:`UserError`."""
    def bad(why: str) -> UserError:
        return UserError(f"{path} is not a resume point of this run ({why})")

    if not isinstance(state, dict) or state.get("kind") not in RESUME_KINDS:
        raise bad("no 'kind' of " + " or ".join(RESUME_KINDS))
    index = state.get("stage_index")
    if not isinstance(index, int) or not 0 <= index <= num_stages:
        raise bad(f"stage_index {index!r} is not a stage of the spec's {num_stages}")
    if not isinstance(state.get("models"), dict):
        raise bad("no model weights")
    if state["kind"] == "mid_stage":
        pos = state.get("position")
        if index == num_stages or not isinstance(pos, dict) or not all(
                isinstance(pos.get(k), int) and pos[k] >= 0 for k in ("epoch", "batch_in_epoch", "step")):
            raise bad("no valid position in its stage")
        for key in ("optimizer", "scheduler", "rng"):
            if key not in state:
                raise bad(f"no '{key}' state")
    elif "rng" not in state:
        raise bad("no 'rng' state")
    return state


def rng_state() -> dict[str, Any]:
    """All RNG states, in weights_only-loadable form."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x
