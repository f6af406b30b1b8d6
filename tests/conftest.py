"""Shared test helpers: tiny specs, CLI runner, single-threaded torch; the ``integration`` marker.

``python -m pytest -m "not integration"`` runs the fast unit tests only; ``python -m pytest`` runs everything.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml
from _pytest.fixtures import FixtureDef

REPO = Path(__file__).resolve().parent.parent
SPECS = Path(__file__).resolve().parent / "specs"

torch.set_num_threads(1)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600
            ) -> subprocess.CompletedProcess:
    """Run ``python -m compressor ARGS`` in a subprocess and capture its output."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "compressor", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


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
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def tiny_spec(tmp_path: Path) -> dict:
    """The tiny KD spec as a dict, writing its runs under tmp_path."""
    spec = yaml.safe_load((SPECS / "tiny_kd.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    return spec


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


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


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


# A test is an integration test (marked ``integration``) when it, a function of its own module it calls, or a
# fixture it uses (at any depth) starts a subprocess (the CLI, pip, torchrun) or runs a spec end to end through
# the engine. The rest of the slow ones (over ~2 s on a 2-core machine: a training loop or an export without the
# engine, a whole synthetic corpus, loading transformers) are named below, in this one place: by the fixture that
# does the slow work (``file::fixture``, the file that defines it), or as ``file::test`` (``file::test[id]`` for
# one case of a parametrized test).
INTEGRATION_CALLS = frozenset({"run_cli", "subprocess", "Popen", "run_spec"})
INTEGRATION_FIXTURES = frozenset({
    "test_export_asr.py::exported", "test_onnx_whisper_teachers.py::ctc_export",
    "test_onnx_whisper_teachers.py::rnnt_export", "test_external_teachers.py::files",
    "test_data_synthetic.py::commands", "conftest.py::tiny_bert", "test_onnx_whisper_teachers.py::tiny_whisper",
})
INTEGRATION_TESTS = frozenset({
    "test_gpu_check.py::test_torchrun_ddp_launch_with_gloo_on_cpu",
    "test_gpu_check.py::test_engine_specs_at_paper_size_are_valid_and_a_tiny_one_runs",
    "test_cli.py::test_exit_code_table[130-Ctrl-C]",
    "test_cli.py::test_exit_code_table[143-SIGTERM]",
    "test_cli.py::test_exit_code_table[1-unexpected_error]",
    "test_progress.py::test_a_run_not_on_a_terminal_prints_a_line_per_epoch_and_phase",
    "test_export_asr.py::test_int8_guard_keeps_fp32_when_int8_is_worse",
    "test_export_asr.py::test_transcript_parity_failure_is_loud",
    "test_export_asr.py::test_per_feature_normalisation_is_left_to_sherpa",
    "test_export_asr.py::test_rnnt_trained_on_the_online_front_end",
    "test_export_ctc_model.py::test_task_learns_and_reports_wer",
    "test_export_classifier.py::test_classifier_export_and_onnxruntime_example",
    "test_rnnt_model.py::test_overfit_then_greedy_and_beam_decode_the_transcripts",
    "test_data_synthetic.py::test_read_speech_languages_and_shifted",
    "test_data_corpus_plan.py::test_large_corpus_is_deterministic",
    "test_fairseq_units.py::test_tiny_fairseq_checkpoints_round_trip",
    "test_catalog_plots.py::test_write_plots",
    "test_masking.py::test_hidden_masking_fraction_padding_and_eval",
    "test_fairseq_units.py::test_a_spec_names_the_fairseq_teacher_and_the_data_loads_waveforms",
    "test_data_synthetic.py::test_corpus_is_deterministic_and_cached",
    "test_data_synthetic.py::test_every_voice_of_every_pool_exists",
    "test_data_corpus_plan.py::test_valid_and_test_voices_are_held_out",
    "test_module_replacing.py::test_rnnt_p0_is_teacher_p1_is_student_and_keys_stay_stable",
    "test_module_replacing.py::test_finetune_phase_trains_the_combined_student_with_its_shared_parts",
    "test_onnx_whisper_teachers.py::test_whisper_base_is_assembled_once_and_verified",
    "test_data_sherpa.py::test_nemo_frontend_equals_sherpa_nemo_transducer",
    "test_lattice_kd.py::test_strategy_adds_weighted_term_and_teacher_gets_no_gradient",
    "test_data_corpus_plan.py::test_large_grammar_vocabulary_and_sentences",
    "test_module_replacing.py::test_strategy2_updates_only_student_modules",
    "test_gpu_check.py::test_bf16_autocast_path_on_cpu",
    "test_data_synthetic.py::test_augmented_training_split",
    "test_masking.py::test_hidden_masking_is_not_in_the_exported_graph",
    "test_data_synthetic.py::test_registry_and_cli",
    "test_hf_text.py::test_real_minilm_loads_offline",
    "test_data_corpus_plan.py::test_large_plan_has_unseen_sentences_and_conditions",
    "test_progress.py::test_corpus_synthesis_reports_progress",
    "test_slu_two_stage.py::test_far_field_commands_are_the_clean_utterances_recorded_far",
})


def _code_names(code: object, seen: set[int]) -> set[str]:
    """The global and attribute names ``code`` and the code nested in it (lambdas, inner functions) use."""
    if id(code) in seen:
        return set()
    seen.add(id(code))
    names = set(code.co_names)  # type: ignore[attr-defined]
    for const in code.co_consts:  # type: ignore[attr-defined]
        if inspect.iscode(const):
            names |= _code_names(const, seen)
    return names


def _runs_integration(func: object, seen: set[int]) -> bool:
    func = inspect.unwrap(func)  # type: ignore[arg-type]
    code = getattr(func, "__code__", None)
    if code is None or id(code) in seen:
        return False
    names = _code_names(code, seen)
    if names & INTEGRATION_CALLS:
        return True
    module = inspect.getmodule(func)
    helpers = [getattr(module, n) for n in names if inspect.isfunction(getattr(module, n, None))]
    return any(h.__module__ == module.__name__ and _runs_integration(h, seen) for h in helpers)


def _is_integration(item: pytest.Function) -> bool:
    if {f"{item.path.name}::{item.originalname}", f"{item.path.name}::{item.name}"} & INTEGRATION_TESTS:
        return True
    defs: list[FixtureDef] = [d for ds in item._fixtureinfo.name2fixturedefs.values() for d in ds]
    if INTEGRATION_FIXTURES & {f"{Path(inspect.getfile(d.func)).name}::{d.argname}" for d in defs}:
        return True
    seen: set[int] = set()
    return _runs_integration(item.function, seen) or any(_runs_integration(d.func, seen) for d in defs)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and _is_integration(item):
            item.add_marker(pytest.mark.integration)
