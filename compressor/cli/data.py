"""``compressor data build|stats SPEC_OR_NAME [key=value ...]``: build a corpus (synthesis, features,
tokenizer) and print its statistics (utterances, hours, speakers, vocabulary, intents) without training.

``SPEC_OR_NAME`` is a spec file (its ``data:`` section is used) or a dataset name; ``key=value`` pairs set
dataset arguments (values parsed as YAML), e.g. ``compressor data stats read_speech language=de``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from compressor.core.errors import UserError
from compressor.core.progress import set_stream, where


def configure(p: argparse.ArgumentParser, add_threads: Callable[[argparse.ArgumentParser], None] | None = None
              ) -> None:
    """Add the ``build`` and ``stats`` subcommands to ``p`` (``compressor data``'s parser)."""
    sub = p.add_subparsers(dest="data_command", required=True, metavar="{build,stats}")
    for name, help_ in (("build", "build (or reuse) a corpus and print its statistics"),
                        ("stats", "print a corpus's statistics (building it when needed)")):
        s = sub.add_parser(name, help=help_, description=f"{help_[0].upper()}{help_[1:]}. " + _USAGE)
        s.add_argument("target", help="spec file (its data: section) or dataset name")
        s.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dataset arguments, e.g. language=de")
        s.add_argument("--cache-dir", default=None, help="cache folder (default $COMPRESSOR_CACHE or "
                       "~/.cache/compressor)")
        s.add_argument("--seed", type=int, default=None, help="run seed (default: the spec's, else 0)")
        s.add_argument("--json", action="store_true",
                       help=f"print the statistics as JSON on standard output; then {where('stderr')[0].lower()}"
                            f"{where('stderr')[1:]}")
        if add_threads is not None:
            add_threads(s)


_USAGE = "Example: compressor data stats read_speech language=de"


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="compressor data", description=__doc__.split("\n\n")[0])
    configure(p)
    return p.parse_args(argv)


def _data_ref(target: str, overrides: list[str]) -> tuple[dict[str, Any], int, int | None]:
    """The dataset reference ``{name: ..., args}``, the seed, and the spec's ``trainer.threads`` (if any)."""
    seed, threads = 0, None
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise UserError(f"spec file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise UserError(f"{path}: malformed YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict) or "name" not in raw["data"]:
            raise UserError(f"{path}: no 'data:' section with a 'name'")
        ref = dict(raw["data"])
        seed = int(raw.get("seed", 0) or 0)
        trainer = raw.get("trainer")
        if isinstance(trainer, dict) and isinstance(trainer.get("threads"), int) and trainer["threads"] > 0:
            threads = trainer["threads"]
    else:
        ref = {"name": target}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"expected key=value, got '{item}'")
        key, value = item.split("=", 1)
        try:
            ref[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            ref[key.strip()] = value
    return ref, seed, threads


def corpus_stats(dm: Any) -> dict[str, Any]:
    """Utterances, hours, speakers, vocabulary and intents per split of a speech DataModule."""
    out: dict[str, Any] = {"splits": {}}
    words_all: Counter[str] = Counter()
    for split, ds in dm.datasets.items():
        frames = sum(ds.lengths)
        words: Counter[str] = Counter(w for u in ds.utts for w in u.text.split())
        words_all.update(words)
        entry = {"utterances": len(ds), "hours": round(frames / 100 / 3600, 4),
                 "mean_seconds": round(frames / 100 / max(1, len(ds)), 3),
                 "speakers": len({u.speaker for u in ds.utts}), "words": sum(words.values()),
                 "vocabulary": len(words)}
        intents = {u.labels.get("intent") for u in ds.utts} - {None}
        if intents:
            entry["intents"] = len(intents)
            entry["phrasings"] = len({u.text for u in ds.utts})
        out["splits"][split] = entry
    info = dm.info
    out.update(vocabulary=len(words_all), tokens=info.get("vocab_size"), tokenizer=info.get("tokenizer"),
               blank_id=info.get("blank_id"), skipped=len(dm.skipped),
               skipped_reasons=dict(Counter(s["reason"] for s in dm.skipped)))
    for key in ("num_classes", "language", "frontend", "corpus_dir", "tokens_file"):
        if key in info:
            out[key] = info[key]
    return out


def _print(stats: dict[str, Any]) -> None:
    print(f"{'split':8} {'utts':>7} {'hours':>8} {'mean s':>7} {'speakers':>8} {'words':>8} {'vocab':>6}"
          f" {'intents':>7}")
    for split, e in stats["splits"].items():
        print(f"{split:8} {e['utterances']:7d} {e['hours']:8.3f} {e['mean_seconds']:7.2f} {e['speakers']:8d} "
              f"{e['words']:8d} {e['vocabulary']:6d} {e.get('intents', '-'):>7}")
    for key in ("vocabulary", "tokens", "tokenizer", "num_classes", "language", "frontend", "skipped",
                "skipped_reasons", "corpus_dir", "tokens_file"):
        if key in stats and stats[key] not in (None, {}):
            print(f"{key}: {stats[key]}")


def main(argv: list[str]) -> int:
    """``compressor data ...`` from its own argument list; returns the exit code."""
    return run(_parse(argv))


def run(args: argparse.Namespace) -> int:
    """Build the corpus ``args`` name and print its statistics; returns the exit code."""
    from compressor.core.threads import configure_threads  # here, as the plugins below: --help needs no torch

    if args.json:
        set_stream("stderr")  # standard output carries the JSON
    ref, spec_seed, spec_threads = _data_ref(args.target, args.overrides)
    configure_threads(getattr(args, "threads", None), spec_threads)  # feature extraction computes with torch
    from compressor.plugins import get_registry

    registry = get_registry()  # the engine's registry with every plugin loaded
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else None
    seed = args.seed if args.seed is not None else spec_seed
    dm = registry.build("dataset", ref, ("data",), cache_dir=cache_dir, seed=seed)
    stats = corpus_stats(dm)
    if args.json:
        print(json.dumps(stats, indent=1, ensure_ascii=False))
    else:
        _print(stats)
    return 0
