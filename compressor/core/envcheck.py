"""Start-up diagnosis of a broken environment: packages that are installed but do not load together.

torch and torchaudio ship compiled code built against each other: a torchaudio release built for another
torch fails at import time deep inside a plugin (``OSError: ... libtorchaudio.so: undefined symbol``).
When loading a plugin (or any command) fails with an ``ImportError`` or ``OSError``, :func:`diagnose` finds
which installed packages clash and returns an :class:`EnvironmentClash` whose one-line message names them,
their versions and the command that fixes the environment. The CLI prints it and exits with code 2.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import re
from collections.abc import Callable

from compressor.core.errors import UserError

#: The tested pair (the exact pins of ``pyproject.toml``; a test keeps the two in step).
TORCH_PAIR = {"torch": "2.11.0", "torchaudio": "2.11.0"}
FIX_PAIR = "python -m pip install " + " ".join(f'"{k}=={v}"' for k, v in TORCH_PAIR.items())


class EnvironmentClash(UserError):
    """Installed packages that do not work together: one line, exit code 2."""


def _version(name: str, version: Callable[[str], str]) -> str:
    try:
        return version(name)
    except md.PackageNotFoundError:
        return "not installed"


def _chain(e: BaseException) -> str:
    """The messages of an exception and its causes (the loader's own error is often the cause)."""
    parts, seen = [], set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(str(cur))
        cur = cur.__cause__ or cur.__context__
    return "\n".join(parts)


def _short(msg: str) -> str:
    """The telling part of a loader error: the undefined symbol or the missing library."""
    m = re.search(r"undefined symbol: (\S+)", msg)
    if m:
        return f"undefined symbol {m.group(1)}"
    m = re.search(r"(lib[\w.+-]+\.so[\w.]*)", msg)
    if m:
        return f"cannot load {m.group(1)}"
    first = (msg.strip().splitlines() or ["unknown error"])[0]
    return first if len(first) <= 160 else first[:157] + "..."


def check_torch_pair(import_module: Callable[[str], object] = importlib.import_module,
                     version: Callable[[str], str] = md.version) -> EnvironmentClash | None:
    """Import torchaudio (which loads its compiled library against torch); a clash if that fails."""
    try:
        import_module("torchaudio")
        return None
    except (ImportError, OSError) as e:
        torch_v, audio_v = _version("torch", version), _version("torchaudio", version)
        if audio_v == "not installed":
            return EnvironmentClash(f"torchaudio is not installed (torch {torch_v}); install the tested pair: "
                                    f"{FIX_PAIR}")
        return EnvironmentClash(f"torchaudio {audio_v} does not load with torch {torch_v} ({_short(_chain(e))})"
                                f"; install the tested pair: {FIX_PAIR}")


def _distribution_of(module: str) -> str | None:
    top = module.split(".")[0]
    try:
        dists = md.packages_distributions().get(top)
    except Exception:  # a broken metadata directory must not hide the original problem
        return None
    return dists[0] if dists else None


def diagnose(error: BaseException, where: str = "",
             import_module: Callable[[str], object] = importlib.import_module,
             version: Callable[[str], str] = md.version) -> EnvironmentClash | None:
    """The environment problem behind ``error`` (an ImportError/OSError), or None when it is not one.

    ``where`` says what was being loaded (``plugin 'asr' (compressor.families.rnnt.plugin)``), for the message.
    """
    if not isinstance(error, (ImportError, OSError)):
        return None
    clash = check_torch_pair(import_module, version)
    if clash is not None:
        return clash
    prefix = f"{where}: " if where else ""
    if isinstance(error, ModuleNotFoundError) and error.name:
        dist = _distribution_of(error.name)
        if dist is None:  # not installed at all: the pip name is usually the module's top-level name
            top = error.name.split(".")[0]
            return EnvironmentClash(f"{prefix}needs the module '{error.name}', which is not installed; "
                                    f"install it: python -m pip install {top}")
        return None  # the distribution is there but a submodule is missing: a plugin bug, not the environment
    msg = _chain(error)
    lib = re.search(r"site-packages/([A-Za-z0-9_]+)/", msg)
    if isinstance(error, OSError) and lib:
        dist = _distribution_of(lib.group(1)) or lib.group(1)
        ver = _version(dist, version)
        return EnvironmentClash(f"{prefix}the installed package {dist} {ver} does not load ({_short(msg)}); "
                                f"reinstall it: python -m pip install --force-reinstall {dist}=={ver}")
    return None
