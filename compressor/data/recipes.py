"""lhotse recipes run on a corpus folder the user has: the manifests are written once into the project cache
(``<cache>/lhotse/<recipe>-<key>/``) and read back from there.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import logging
from pathlib import Path
from typing import Any

from compressor.core.errors import UserError
from compressor.data.lhotse_io import cuts_from


def recipe_dir(cache_dir: Path, recipe: str, corpus_dir: Path, args: dict[str, Any]) -> Path:
    """Where the manifests of ``recipe`` on ``corpus_dir`` (with ``args``) are cached."""
    key = json.dumps({"corpus": str(corpus_dir.resolve()), "args": args}, sort_keys=True, default=str)
    return cache_dir / "lhotse" / f"{recipe}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def prepare(recipe: str, corpus_dir: str | Path, cache_dir: Path, **args: Any) -> dict[str, Any]:
    """Run lhotse's ``prepare_<recipe>`` on ``corpus_dir``: ``{part: CutSet}``. Whatever the recipe raises on a
    corpus it cannot read is one :class:`UserError` naming the recipe and the folder."""
    import lhotse.recipes

    corpus = Path(corpus_dir).expanduser().resolve()  # recordings name their audio by this path
    if not corpus.is_dir():
        raise UserError(f"lhotse recipe '{recipe}': corpus folder not found: {corpus}")
    fn = getattr(lhotse.recipes, f"prepare_{recipe}", None)
    if fn is None:
        raise UserError(f"lhotse has no recipe '{recipe}' (lhotse.recipes.prepare_{recipe})")
    accepted = inspect.signature(fn).parameters
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise UserError(f"lhotse recipe '{recipe}' takes no argument(s) {', '.join(unknown)} "
                        f"(it takes {', '.join(p for p in accepted if p not in ('corpus_dir', 'output_dir'))})")
    out = recipe_dir(cache_dir, recipe, corpus, args)
    level = logging.getLogger().level
    logging.getLogger().setLevel(max(level, logging.ERROR))  # recipes log a line per missing file
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # and draw progress bars
            manifests = fn(corpus_dir=corpus, output_dir=out, **args)
    except UserError:
        raise
    except Exception as e:  # an assertion, a malformed line (ValueError), an unreadable file (OSError) ...
        raise UserError(f"lhotse recipe '{recipe}' cannot prepare {corpus}: {type(e).__name__}: "
                        f"{str(e)[:200] or 'failed'}") from None
    finally:
        logging.getLogger().setLevel(level)
    return {str(part): _cuts(m, f"{out}/{recipe}:{part}") for part, m in manifests.items()}


def _cuts(manifests: Any, where: str) -> Any:
    from lhotse import CutSet

    if isinstance(manifests, CutSet):
        return manifests
    if isinstance(manifests, dict) and "cuts" in manifests:
        return manifests["cuts"]
    if isinstance(manifests, dict) and "recordings" in manifests and "supervisions" in manifests:
        return cuts_from(manifests["recordings"], manifests["supervisions"], where)
    raise UserError(f"{where}: the recipe gave no recordings and supervisions for this part")
