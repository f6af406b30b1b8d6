"""Reliability: a faulty plugin or component is named (exit 1), ``sys.exit`` inside one is a fault, and a run
that fails before its first step leaves no run directory behind (one that made progress stays resumable)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import BaseModel
from support import write_spec
from support.reliability import cli, one_line, tiny

from compressor import Strategy, UserError, hookimpl
from compressor.plugins import get_plugins, reset_plugins


class BadCheck(Strategy):
    name = "rel_bad_check"

    @classmethod
    def check(cls, args, check) -> None:
        raise RuntimeError("check exploded")


class ExitInCheck(Strategy):
    name = "rel_exit_in_check"

    @classmethod
    def check(cls, args, check) -> None:
        sys.exit(3)


class BadInit(Strategy):
    name = "rel_bad_init"

    def __init__(self, args) -> None:
        raise ValueError("constructor exploded")


class ExitInHook(Strategy):
    name = "rel_exit_in_hook"

    @hookimpl
    def compressor_step_start(self, ctx) -> None:
        if ctx.step == 3:
            sys.exit(0)


class FailPrepare(Strategy):
    name = "rel_fail_prepare"

    @hookimpl
    def compressor_prepare_models(self, ctx) -> None:
        raise OSError("prepare exploded")


class InterruptFirstStep(Strategy):
    name = "rel_interrupt"

    @hookimpl
    def compressor_step_start(self, ctx) -> None:
        raise KeyboardInterrupt


class UserFault(Strategy):
    name = "rel_user_fault"

    @hookimpl
    def compressor_prepare_models(self, ctx) -> None:
        raise UserError("the teacher has no layer 'encoder.9'")


def _broken_model(args: BaseModel, info: dict):
    raise RuntimeError("model factory exploded")


def _broken_dataset(args: BaseModel, **_: object):
    raise RuntimeError("dataset factory exploded")


def _exiting_task(args: BaseModel, info: dict):
    sys.exit("bye")


@pytest.fixture
def registered():
    """Register the faulty components in the process-wide registry; forget them afterwards."""
    registry = get_plugins().registry
    for cls in (BadCheck, ExitInCheck, BadInit, ExitInHook, FailPrepare, InterruptFirstStep, UserFault):
        registry.add("strategy", cls.name, cls)
    registry.add("model", "rel_broken_model", _broken_model)
    registry.add("dataset", "rel_broken_dataset", _broken_dataset)
    registry.add("task", "rel_exiting_task", _exiting_task)
    yield registry
    reset_plugins()


def _spec_with(tmp_path: Path, plugin: str, stage: int = 1) -> Path:
    spec = tiny(tmp_path)
    spec["stages"][stage]["plugins"] = [{"name": plugin}]
    return write_spec(tmp_path / "spec.yaml", spec)


@pytest.mark.parametrize(("plugin", "fragment"), [
    ("rel_bad_check", "plugin 'rel_bad_check' (test) failed in check(): RuntimeError: check exploded"),
    ("rel_exit_in_check", "plugin 'rel_exit_in_check' (test) failed in check(): called sys.exit(3)"),
])
def test_faults_in_check_name_the_plugin(registered, tmp_path: Path, capsys, plugin: str, fragment: str) -> None:
    registered.get("strategy", plugin).package = "test"
    code, err = cli(capsys, "validate", _spec_with(tmp_path, plugin))
    assert code == 1 and fragment in one_line(err)


@pytest.mark.parametrize(("plugin", "stage", "fragment"), [
    ("rel_bad_init", 0, "plugin 'rel_bad_init' failed to start: ValueError: constructor exploded"),
    ("rel_fail_prepare", 0, "plugin 'rel_fail_prepare' failed in hook 'compressor_prepare_models': OSError"),
    ("rel_user_fault", 0, "plugin 'rel_user_fault': the teacher has no layer 'encoder.9'"),
])
def test_faults_before_the_first_step_leave_nothing(registered, tmp_path: Path, capsys, plugin: str,
                                                    stage: int, fragment: str) -> None:
    code, err = cli(capsys, "run", _spec_with(tmp_path, plugin, stage))
    line = one_line(err)
    assert code == (2 if plugin == "rel_user_fault" else 1) and fragment in line, line
    assert not (tmp_path / "runs").exists(), "a run that did nothing left its directory behind"


def test_ctrl_c_before_the_first_step_leaves_nothing(registered, tmp_path: Path, capsys) -> None:
    code, err = cli(capsys, "run", _spec_with(tmp_path, "rel_interrupt", 0))
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_sys_exit_in_a_hook_is_a_named_fault_and_the_run_stays_resumable(registered, tmp_path: Path,
                                                                        capsys) -> None:
    code, err = cli(capsys, "run", _spec_with(tmp_path, "rel_exit_in_hook"))
    line = one_line(err)
    assert code == 1 and "plugin 'rel_exit_in_hook' failed in hook 'compressor_step_start'" in line, line
    assert "sys.exit(0)" in line
    (run_dir,) = (tmp_path / "runs" / "tiny_kd").iterdir()  # the teacher stage finished: kept for --resume
    assert (run_dir / "checkpoints" / "last.pt").exists() and not (run_dir / "final" / "COMPLETE").exists()


@pytest.mark.parametrize(("where", "value", "fragment"), [
    ("student", {"name": "rel_broken_model"}, "model 'rel_broken_model' failed to build: RuntimeError: model"),
    ("data", {"name": "rel_broken_dataset"}, "dataset 'rel_broken_dataset' failed to build: RuntimeError"),
    ("task", {"name": "rel_exiting_task"}, "task 'rel_exiting_task' failed to build: called sys.exit('bye')"),
])
def test_faulty_components_are_named_and_leave_nothing(registered, tmp_path: Path, capsys, where: str,
                                                       value: dict, fragment: str) -> None:
    spec = tiny(tmp_path, **{where: value})
    code, err = cli(capsys, "run", write_spec(tmp_path / "spec.yaml", spec))
    line = one_line(err)
    assert code == 1 and fragment in line, line
    assert not (tmp_path / "runs").exists()


def test_a_diverging_loss_is_one_line_and_keeps_the_metrics(tmp_path: Path, capsys) -> None:
    spec = tiny(tmp_path)
    kd = spec["stages"][1]["plugins"][0]
    kd.update(weight={"name": "constant", "value": 1e308}, alpha=1.0)  # finite, and absurd
    spec["stages"][1]["optimizer"] = {"name": "sgd", "lr": 1.0}
    code, err = cli(capsys, "run", write_spec(tmp_path / "spec.yaml", spec))
    line = one_line(err)
    assert code == 2 and "stage 'distil' step" in line and "training diverged" in line, line
    (run_dir,) = (tmp_path / "runs" / "tiny_kd").iterdir()
    assert (run_dir / "metrics.jsonl").stat().st_size > 0 and not (run_dir / "final" / "COMPLETE").exists()
