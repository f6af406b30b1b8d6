"""Threads: every command computes with --threads, else trainer.threads, else one per usable CPU, never more
threads than CPUs; environment.json records what a run ran on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from support import run_cli, write_spec
from support.reliability import tiny

from compressor.core import threads as threads_mod
from compressor.core.limits import cpu_count
from compressor.core.threads import configure_threads
from compressor.run.engine import run_spec
from compressor.run.finished import evaluate_run


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("threads")
    return run_spec(write_spec(tmp / "spec.yaml", tiny(tmp)))  # trainer.threads: 1


@pytest.fixture
def four_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4-CPU machine, whatever this one has (torch accepts more threads than cores)."""
    monkeypatch.setattr(threads_mod, "cpu_count", lambda: 4)


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_precedence_and_the_cap(four_cpus, monkeypatch: pytest.MonkeyPatch) -> None:
    assert configure_threads(None, None).count == 4 and torch.get_num_threads() == 4  # one per CPU
    chosen = configure_threads(None, 2)
    assert (chosen.count, chosen.source) == (2, "trainer.threads") and torch.get_num_threads() == 2
    chosen = configure_threads(3, 2)
    assert (chosen.count, chosen.source) == (3, "--threads") and torch.get_num_threads() == 3
    chosen = configure_threads(64, None)  # never more threads than CPUs
    assert chosen.count == 4 and "asked for 64; this process may use 4 CPUs" in chosen.describe()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: two processes share the machine
    assert configure_threads(None, None).count == 2


def test_cpu_count_respects_a_container_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    from compressor.core import limits

    monkeypatch.setattr(limits, "cpu_quota", lambda: 1)
    assert limits.cpu_count() == 1
    monkeypatch.setattr(limits, "cpu_quota", lambda: None)
    assert limits.cpu_count() == len(os.sched_getaffinity(0))


def test_eval_honours_the_spec_and_the_flag(finished: Path, four_cpus) -> None:
    torch.set_num_threads(4)
    seen = []
    from compressor.run import finished as finished_run

    original = finished_run.evaluate_model

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    finished_run.evaluate_model = spy
    try:
        evaluate_run(finished, "test", ["student"])  # the spec says trainer.threads: 1
        evaluate_run(finished, "test", ["student"], threads=3)
    finally:
        finished_run.evaluate_model = original
    assert seen == [1, 3]


def test_export_honours_the_spec_and_the_flag(finished: Path, four_cpus, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    from compressor.cli.export import export_run
    from compressor.core.errors import UserError
    from compressor.export import run as export_run_mod

    seen = []

    def record(run, out_dir, force=False, model_name=None, untrained=()):  # the export is tested elsewhere
        seen.append((torch.get_num_threads(), threads_mod.thread_count()))
        raise UserError("stop here")

    monkeypatch.setattr(export_run_mod, "export_model", record)
    torch.set_num_threads(4)
    for flag in (None, 2):
        with pytest.raises(UserError, match="stop here"):
            export_run(finished, tmp_path / f"out{flag}", threads=flag)
    assert seen == [(1, 1), (2, 2)]


def test_the_cli_says_what_it_chose(finished: Path) -> None:
    done = run_cli("eval", str(finished), "--models", "student", "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert "compute: 1 thread (--threads)" in done.stdout and "student (test): loss=" in done.stdout
    done = run_cli("eval", str(finished), "--models", "student")
    assert "compute: 1 thread (the spec's trainer.threads)" in done.stdout


def test_environment_json(finished: Path) -> None:
    env = json.loads((finished / "environment.json").read_text())
    assert env["cpu"]["usable"] == cpu_count() and env["cpu"]["machine"] == os.cpu_count()
    assert env["torch_threads"] == {"intra_op": 1, "inter_op": env["torch_threads"]["inter_op"],
                                    "source": "trainer.threads"}
    assert env["device"]["type"] == "cpu" and env["device"]["precision"] == "fp32"
    packages = env["packages"]
    for name in ("compressor", "torch", "torchaudio", "pydantic", "onnxruntime", "pytorch-optimizer", "tqdm",
                 "matplotlib"):
        assert name in packages, name
    assert packages["torch"] == torch.__version__.split("+")[0]


def test_parity_sessions_use_the_commands_threads(tmp_path: Path, four_cpus) -> None:
    import onnx
    from onnx import TensorProto, helper

    from compressor.export import parity

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    configure_threads(3, 1)
    assert parity.session(path).get_session_options().intra_op_num_threads == 3
    assert parity.session(path, threads=1).get_session_options().intra_op_num_threads == 1


def test_latency_threads_never_exceed_the_cpus() -> None:
    from compressor.export.bench import latency_threads

    assert latency_threads(1) == 1 and latency_threads(10_000) == cpu_count()
