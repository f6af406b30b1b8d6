"""The rule that marks a test ``integration`` (applied by ``tests/conftest.py`` at collection).

A test is an integration test when it, a function of its own module it calls, or a fixture it uses (at any depth)
starts a subprocess (the CLI, pip, torchrun) or runs a spec end to end through the engine. The rest of the slow ones
(over ~1 s on a 2-core machine: a training loop or an export without the engine, a whole synthetic corpus, loading
transformers) are named below, in this one place: by the fixture that does the slow work (``file::fixture``, the
file that defines it), or as ``file::test`` (``file::test[id]`` for one case of a parametrized test). Files are named
without their folder: test file names are unique under ``tests/``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from _pytest.fixtures import FixtureDef

INTEGRATION_CALLS = frozenset({"run_cli", "subprocess", "Popen", "run_spec"})


INTEGRATION_FIXTURES = frozenset({
    "test_export_asr.py::exported", "test_onnx_whisper_teachers.py::ctc_export",
    "test_onnx_whisper_teachers.py::rnnt_export", "test_external_teachers.py::files",
    "test_data_synthetic.py::commands", "conftest.py::tiny_bert", "test_onnx_whisper_teachers.py::tiny_whisper",
    "test_onnx_whisper_teachers.py::sherpa_whisper",
    "test_cache_integrity.py::corpus",
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
    "test_pseudo_labels_benchmark.py::test_every_spec_validates_and_the_labelled_share_keeps_its_references",
    "test_slu_two_stage_benchmark.py::test_rows_add_one_step_each",
    "test_data_throughput_benchmark.py::test_quick_before_after_keeps_the_other_keys",
    "test_reliability_spec.py::test_refused_before_any_work[teacher.layers=100000000]",
    "test_reliability_spec.py::test_refused_before_any_work[data.train_size=12000 ; stages[0].batch_]",
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


def runs_integration(func: object, seen: set[int]) -> bool:
    """Whether ``func``, or a function of its own module it calls (at any depth), makes an integration call."""
    func = inspect.unwrap(func)  # type: ignore[arg-type]
    code = getattr(func, "__code__", None)
    if code is None or id(code) in seen:
        return False
    names = _code_names(code, seen)
    if names & INTEGRATION_CALLS:
        return True
    module = inspect.getmodule(func)
    helpers = [getattr(module, n) for n in names if inspect.isfunction(getattr(module, n, None))]
    return any(h.__module__ == module.__name__ and runs_integration(h, seen) for h in helpers)


def is_integration(item: pytest.Function) -> bool:
    """Whether the collected test ``item`` is an integration test (the module docstring's rule)."""
    if {f"{item.path.name}::{item.originalname}", f"{item.path.name}::{item.name}"} & INTEGRATION_TESTS:
        return True
    defs: list[FixtureDef] = [d for ds in item._fixtureinfo.name2fixturedefs.values() for d in ds]
    if INTEGRATION_FIXTURES & {f"{Path(inspect.getfile(d.func)).name}::{d.argname}" for d in defs}:
        return True
    seen: set[int] = set()
    return runs_integration(item.function, seen) or any(runs_integration(d.func, seen) for d in defs)
