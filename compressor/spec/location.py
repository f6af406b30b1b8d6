"""Where a spec error is: the file and line of its key path, or the ``--set`` flag that caused it."""

from __future__ import annotations

from collections.abc import Callable

from compressor.core.errors import SpecError
from compressor.spec.loading import set_flag


def locate(e: SpecError, file: str, lines: dict[tuple, int], set_paths: list[tuple[tuple, str]],
            revalidate: Callable[[], object]) -> SpecError:
    """Place an error: at the ``--set`` flag that caused it, else at the file's line for its key path.

    ``revalidate`` validates the file without the overrides (raising its first :class:`SpecError`).
    """
    if e.file is not None and e.file != file:
        return SpecError(e.message, e.path, e.file, e.line)
    path = tuple(e.path)
    inside = [text for p, text in set_paths if path[:len(p)] == p]
    flag = inside[-1] if inside else None
    if flag is None and set_paths and path:
        # A check across keys (a sibling or parent of a --set key) may fail because of the override: blame the
        # closest flag unless the file alone fails the same way.
        def shared(p: tuple) -> int:
            return next((i for i, (a, b) in enumerate(zip(p, path)) if a != b), min(len(p), len(path)))

        best = max(set_paths, key=lambda pt: shared(pt[0]))
        if shared(best[0]) > 0:
            try:
                revalidate()
                alone: SpecError | None = None
            except SpecError as e2:
                alone = e2
            except Exception:
                alone = None
            if alone is None or (alone.message, tuple(alone.path)) != (e.message, path):
                flag = [text for p, text in set_paths if shared(p) == shared(best[0])][-1]
    if flag is not None:
        return SpecError(e.message, e.path, set_flag(flag), None)
    return SpecError(e.message, e.path, file, e.line if e.line is not None else nearest_line(lines, path))


def nearest_line(lines: dict[tuple, int], path: tuple) -> int | None:
    path = tuple(path)
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path)
