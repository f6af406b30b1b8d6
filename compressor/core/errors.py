"""User-facing errors.

Anything that is the user's fault (a bad spec, a missing file, a plugin argument out of range) is raised
as a :class:`UserError`. The CLI prints its message on one line and exits with code 2, without a traceback.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable, Sequence

KeyPath = Sequence["str | int"]


def format_path(path: KeyPath) -> str:
    """``("stages", 1, "plugins", 0, "base")`` -> ``stages[1].plugins[0].base``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The closest valid name for a typo, or None."""
    matches = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    choices = sorted(set(choices))
    guess = closest(name, choices)
    hint = f"; did you mean '{guess}'?" if guess else ""
    listing = ", ".join(choices) if len(choices) <= 12 else ", ".join(choices[:12]) + ", ..."
    return f"{hint} (valid: {listing})" if choices else hint


def exception_text(e: BaseException) -> str:
    """The first line of an exception's message, without the quotes ``KeyError`` puts around it."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        text = e.args[0]
    else:
        text = str(e)
    return (text.strip().splitlines() or [""])[0].strip()


class UserError(Exception):
    """An error caused by input: reported as one clear line, exit code 2."""

    exit_code = 2


class SpecError(UserError):
    """A problem at a key path of a spec file, with the line it stands on when known."""

    def __init__(self, message: str, path: KeyPath = (), file: str | None = None, line: int | None = None):
        self.message = message
        self.path = tuple(path)
        self.file = file
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" at {format_path(self.path)}" if self.path else ""
        return f"{where}{key}: {self.message}"


#: Errors of the file system, not of the program: a full disk or quota, a read-only file system, no permission.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class DiskError(UserError):
    """A write the file system refused (full, read-only, no permission): one line naming the path and the
    cause, exit code 2. What was being written is not presented as done; a run that made progress resumes
    once the cause is fixed."""


def disk_error(e: BaseException, path: object = None) -> DiskError | None:
    """The :class:`DiskError` behind ``e`` (itself, its cause or context), naming ``path`` when the error does
    not; None when ``e`` is not such an error."""
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 8:
        if isinstance(cur, DiskError):
            return cur
        if isinstance(cur, OSError) and cur.errno in DISK_ERRNOS:
            where = cur.filename if cur.filename is not None else path
            cause = cur.strerror or os.strerror(cur.errno)
            hint = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
                    errno.EROFS: "choose a writable place"}.get(cur.errno, "fix its permissions")
            return DiskError(f"cannot write {where if where is not None else 'a file'}: {cause} "
                             f"({errno.errorcode.get(cur.errno, cur.errno)}); {hint} and try again")
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def raise_disk_error(e: BaseException, path: object = None) -> None:
    """Raise the :class:`DiskError` behind ``e`` (see :func:`disk_error`), if there is one."""
    problem = disk_error(e, path)
    if problem is not None and problem is not e:
        raise problem from e


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (temporary files are removed), exit with 143."""


class PluginError(Exception):
    """An exception raised inside a plugin hook or component, re-raised naming the plugin (or the component
    and its package) and what failed. ``SystemExit`` from plugin code is one too."""

    def __init__(self, plugin: str, hook: str, original: BaseException, action: str | None = None,
                 package: str | None = None, subject: str | None = None):
        plugin = plugin.split("#")[0]  # strategies are registered per stage as "name#index"
        self.plugin = plugin
        self.hook = hook
        self.original = original
        action = action or f"failed in hook '{hook}'"
        if isinstance(original, SystemExit):
            detail = f"called sys.exit({original.code!r}), which ends nothing but the plugin's own work here"
        else:
            text = exception_text(original)
            detail = f"{type(original).__name__}: {text}" if text else type(original).__name__
        who = subject or f"plugin '{plugin}'"
        if package and package != "?":
            who += f" ({package})"
        super().__init__(f"{who} {action}: {detail}")
