"""Ctrl-C and SIGTERM, delivered where they are safe.

Python raises ``KeyboardInterrupt`` at whatever bytecode runs when the signal arrives. Inside ``torch.save``
that bytecode can be the file-write callback that torch's C++ zip writer calls: the exception then breaks the
writer mid-record (``unexpected pos`` errors, and heap corruption that aborts the process). The command line
installs :func:`unwinding`, whose handler raises ``KeyboardInterrupt`` (SIGINT) or
:class:`~compressor.core.errors.Terminated` (SIGTERM) at once, except inside :func:`deferred` blocks (atomic writes,
each training step), where the signal is held and raised when the block ends. A second signal while one is held is
raised at once: pressing Ctrl-C twice stops a step that does not end.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

from compressor.core.errors import Terminated

_depth = 0
_pending: int | None = None


def _deliver(signum: int) -> None:
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt


def _handler(signum: int, frame: Any) -> None:
    global _pending
    if _depth and _pending is None:
        _pending = signum
        return
    _pending = None
    _deliver(signum)


def signal_behind(e: BaseException) -> BaseException | None:
    """The Ctrl-C or SIGTERM behind ``e``: itself, or one that a C extension turned into another error (a
    signal during the import of a compiled module surfaces as ``ImportError: initialization failed``)."""
    cur: BaseException | None = e
    for _ in range(8):
        if cur is None:
            return None
        if isinstance(cur, (KeyboardInterrupt, Terminated)):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends (when :func:`unwinding` is installed)."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            _deliver(signum)


@contextlib.contextmanager
def unwinding() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into exceptions that unwind (``finally`` blocks remove temporary files), deferred
    inside :func:`deferred` blocks. Main thread only; elsewhere it does nothing."""
    try:
        previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True
