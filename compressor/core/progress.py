"""Progress for everything a user waits on: corpus synthesis, feature extraction, each training stage,
evaluation, export and its checks.

Where it goes depends on where the output goes:

* a terminal (standard output and standard error both are): a progress bar per phase (tqdm, on standard
  error), and a line above the bars for each finished epoch or phase;
* anything else (CI, ``nohup``, ``| tee``, a log file): plain lines on standard output, so a log shows what
  ran, how far it got and how fast: one when a phase starts, one every :data:`INTERVAL` seconds while it runs
  (count, rate, time left), and one when it ends, with its key metrics.

Standard error carries errors only (one ``error:`` line), so ``2> err.txt`` keeps exactly the error.
Commands that print machine-readable output on standard output (``--json``) send their progress lines to
standard error instead (:func:`set_stream`). ``COMPRESSOR_PROGRESS=bar|lines|off`` overrides the choice;
``COMPRESSOR_PROGRESS_INTERVAL`` sets the seconds between lines of a running phase (default 30).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

#: Seconds between two lines of a phase that is still running (line mode).
INTERVAL = 30.0

_STREAM = "stdout"
_STREAM_WORDS = {"stdout": "standard output", "stderr": "standard error"}
_BAR_STREAM = "stderr"  # tqdm's bars and the lines written above them


def where(stream: str = "stdout") -> str:
    """Where progress goes, in words, for help texts: derived from what :func:`say` and :class:`Progress` do
    when lines go to ``stream`` (:func:`set_stream`)."""
    return (f"Progress goes to {_STREAM_WORDS[stream]} as timestamped lines, or as bars on "
            f"{_STREAM_WORDS[_BAR_STREAM]} when both streams are a terminal (COMPRESSOR_PROGRESS=bar|lines|off "
            f"chooses); errors go to standard error")


def set_stream(name: str) -> None:
    """Where progress lines go: ``stdout`` (the default) or ``stderr`` (when stdout carries JSON)."""
    global _STREAM
    if name not in ("stdout", "stderr"):
        raise ValueError(f"progress stream must be stdout or stderr, not {name!r}")
    _STREAM = name


def _stream() -> TextIO:
    return sys.stderr if _STREAM == "stderr" else sys.stdout


def _bar_stream() -> TextIO:
    return sys.stderr if _BAR_STREAM == "stderr" else sys.stdout


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def mode() -> str:
    """``bar`` (standard output and error are a terminal), ``lines`` (one is not) or ``off``."""
    chosen = os.environ.get("COMPRESSOR_PROGRESS", "auto").strip().lower()
    if chosen in ("bar", "lines", "off"):
        return chosen
    return "bar" if _isatty(sys.stderr) and _isatty(_stream()) else "lines"


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("COMPRESSOR_PROGRESS_INTERVAL", INTERVAL)))
    except ValueError:
        return INTERVAL


def duration(seconds: float) -> str:
    """``4.2s``, ``3m05s``, ``1h02m``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def plural(unit: str, n: float = 2) -> str:
    """``batch`` -> ``batches``, ``step`` -> ``steps`` (unless ``n`` is 1)."""
    if n == 1 or unit.endswith("s"):
        return unit
    return unit + ("es" if unit.endswith(("x", "ch", "sh")) else "s")


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """``loss 1.234, valid/wer 0.4512``: numbers to 4 significant digits, in the order given."""
    parts = []
    for key, value in metrics.items():
        if value is None:
            continue
        if isinstance(value, float):
            shown = f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
        else:
            shown = str(value)
        parts.append(f"{key} {shown}")
    return ", ".join(parts)


def say(text: str, enabled: bool = True) -> None:
    """One line of progress in any mode but ``off``: above the running bars in a terminal, else a timestamped
    line on standard output (see :func:`set_stream`)."""
    if not enabled:
        return
    current = mode()
    if current == "off":
        return
    if current == "bar":
        from tqdm import tqdm

        tqdm.write(text, file=_bar_stream())
    else:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=_stream(), flush=True)


class Progress:
    """One phase: ``with Progress("final evaluation: student", total=32, unit="batch") as p: ... p.update()``.

    ``metrics(...)`` sets the values shown beside the bar and in the next line; ``close(text)`` ends the phase
    with a line (``text``, or the count and time taken). ``enabled=False`` (not the main process) shows nothing.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", *, initial: int = 0,
                 enabled: bool = True, bar: bool = True, announce: bool = True) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.n = initial
        self.initial = initial
        self.values: dict[str, Any] = {}
        self.started = time.monotonic()
        self._last_line = self.started
        self._closed = False
        current = mode() if enabled else "off"
        if current == "bar" and not bar:
            current = "lines"
        self.mode = current
        self._interval = _interval()
        self._bar = None
        if current == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=_bar_stream(),
                             dynamic_ncols=True, leave=False, mininterval=0.5)
        elif current == "lines" and announce:
            size = f" ({total:,} {plural(unit, total)})" if total is not None else ""
            say(f"{desc}: started{size}")

    # -- updates -------------------------------------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._last_line >= self._interval:
                self._last_line = now
                say(f"{self.desc}: {self.status()}")

    def metrics(self, **values: Any) -> None:
        """Values to show beside the bar and in the following lines (``None`` removes one)."""
        self.values.update(values)
        self.values = {k: v for k, v in self.values.items() if v is not None}
        if self._bar is not None:
            self._bar.set_postfix_str(format_metrics(self.values), refresh=False)

    def line(self, text: str) -> None:
        """A line about this phase (an epoch's results) in any mode but ``off``."""
        if self.mode != "off":
            say(f"{self.desc}: {text}")

    def status(self) -> str:
        """``120/500 utts (24%), 3.1 utts/s, 2m03s left · loss 1.23``."""
        elapsed = time.monotonic() - self.started
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else 0.0
        unit = plural(self.unit)
        text = f"{self.n:,}/{self.total:,} {unit} ({100 * self.n / max(1, self.total):.0f}%)" if self.total \
            else f"{self.n:,} {unit}"
        if rate > 0:
            text += f", {rate:.3g} {unit}/s"
            if self.total:
                text += f", {duration((self.total - self.n) / rate)} left"
        extra = format_metrics(self.values)
        return f"{text} · {extra}" if extra else text

    # -- end -----------------------------------------------------------------------------------------------
    def close(self, text: str | None = None, silent: bool = False) -> None:
        """End the phase; ``text`` (or the count and time taken) is its last line, none when ``silent`` (a
        phase that failed, or one whose results another line reports)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        if self.mode == "off" or silent:
            return
        if text is None:
            unit = plural(self.unit, self.n)
            text = f"done, {self.n:,} {unit} in {duration(self.elapsed)}"
            extra = format_metrics(self.values)
            if extra:
                text += f" · {extra}"
        say(f"{self.desc}: {text}")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.close(silent=exc_type is not None)  # a failure is reported by its error, not as "done"


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "batch", enabled: bool = True,
          announce: bool = True, report_end: bool = True) -> Iterator[T]:
    """Iterate over ``items`` showing progress as one phase (its length from ``total`` or ``len(items)``).

    ``announce``/``report_end=False`` leave out the start and end lines (the caller reports the results)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    p = Progress(desc, total=total, unit=unit, enabled=enabled, announce=announce)
    try:
        for item in items:
            yield item
            p.update()
    except BaseException:
        p.close(silent=True)
        raise
    p.close(silent=not report_end)
