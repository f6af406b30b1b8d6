"""Helpers the tests share (imported as ``support``: pytest puts ``tests/`` on the path, see pyproject.toml).

``REPO`` and ``SPECS`` are absolute, so a test finds the repository's files from any folder under ``tests/``.
Fixtures and the ``integration`` marker hook live in ``tests/conftest.py``; the marker rule in ``support.markers``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).resolve().parent / "specs"


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600
            ) -> subprocess.CompletedProcess:
    """Run ``python -m compressor ARGS`` in a subprocess and capture its output."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "compressor", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def audio_digest(folder: Path) -> str:
    """One hash of every FLAC file's name and bytes under ``folder`` (a corpus's audio, to compare builds)."""
    h = hashlib.sha1()
    for path in sorted(folder.rglob("*.flac")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def load_benchmark(name: str) -> ModuleType:
    """The benchmark script ``NAME.py`` (in its folder under ``benchmarks/``) imported as a module, with its folder
    and ``benchmarks/`` (the shared ``reuse`` and ``stats``) on the path while it loads, as when it runs."""
    found = sorted((REPO / "benchmarks").glob(f"*/{name}.py")) + sorted((REPO / "benchmarks").glob(f"{name}.py"))
    assert len(found) == 1, f"benchmark {name}: {found}"
    paths = [str(found[0].parent), str(REPO / "benchmarks")]
    sys.path[:0] = paths
    try:
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", found[0])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module
    finally:
        for p in paths:
            sys.path.remove(p)


def write_spec(path: Path, spec: dict) -> Path:
    """``spec`` written as YAML to ``path`` (keys in their order)."""
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def save_tiny_bert(out: Path, hidden: int = 16, layers: int = 2) -> Path:
    """A tiny BERT (random weights) and a word-level WordPiece tokenizer over the synthetic transcripts' words,
    saved with save_pretrained: a text teacher that loads in milliseconds."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertConfig, BertModel, BertTokenizer
    from transformers.utils import logging

    from compressor.corpora.synthetic_features import WORDS

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    out.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), *"abcdefghijklmnopqrstuvwxyz"]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(out)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64)
        BertModel(config).save_pretrained(out)
    return out


def text_spec(tmp_path: Path, bert: Path) -> dict:
    """A seconds-fast cross-modal spec: a tiny text teacher (transcripts) and a feature-sequence student."""
    return {
        "name": "xmodal", "seed": 1, "output_dir": str(tmp_path / "runs"),
        "task": {"name": "classification"},
        "data": {"name": "synthetic_features", "num_classes": 4, "feature_dim": 8, "train_size": 48,
                 "valid_size": 16, "test_size": 16, "min_frames": 12, "max_frames": 20, "text": True},
        "teacher": {"name": "hf_text_classifier", "path": str(bert), "head": "teacher"},
        "student": {"name": "seq_classifier", "encoder": "lstm", "hidden": 8, "layers": 1},
        "trainer": {"progress_bar": False, "threads": 1},
        "stages": [
            {"name": "teacher", "train": ["teacher"], "epochs": 1, "batch_size": 16,
             "optimizer": {"name": "adamw", "lr": 0.003}},
            {"name": "distil", "train": ["student"], "frozen": ["teacher"], "epochs": 2, "batch_size": 16,
             "optimizer": {"name": "adam", "lr": 0.01}, "plugins": []},
        ],
        "evaluate": {"split": "test", "models": ["teacher", "student"]},
    }


def find_test_file(name: str) -> Path:
    """The test module called ``name`` (``test_cli.py``) wherever it sits under ``tests/``."""
    found = sorted((REPO / "tests").glob(f"**/{name}"))
    assert len(found) == 1, f"test file {name}: {found}"
    return found[0]
