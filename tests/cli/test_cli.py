"""The command line as a user meets it: help on every subcommand, one-line errors, and the table of exit codes in
docs/cli.md walked row by row."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO, SPECS, write_spec
from support.reliability import cli, one_line, tiny

from compressor.cli import _parser, main
from compressor.core.errors import PluginError, exception_text


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the parser (``("data", "build")`` included), found in the parser itself."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((*prefix, name))
                out += _commands(sub, (*prefix, name))
    return out


COMMANDS = _commands(_parser())


def test_every_documented_command_exists() -> None:
    readme = (REPO / "docs" / "cli.md").read_text()
    block = readme.split("# Command line", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    documented = {line.split()[1] for line in block.splitlines() if line.startswith("compressor ")}
    assert documented == {c[0] for c in COMMANDS}
    assert {("data", "build"), ("data", "stats")} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_on_every_subcommand(command: tuple[str, ...], flag: str, capsys) -> None:
    code = main([*command, flag])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith(f"usage: compressor {' '.join(command)}"), out
    assert err == ""


def test_help_needs_no_torch() -> None:
    """``--help`` (and usage errors) answer before any heavy import."""
    code = ("import sys; from compressor.cli import main; main(['data', 'build', '--help']); "
            "main(['eval']); print(sorted(m for m in ('torch', 'pydantic_core') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


@pytest.mark.parametrize(("argv", "fragment"), [
    (["data"], "compressor data: the following arguments are required"),
    (["eval"], "compressor eval: the following arguments are required: RUN_DIR"),
    (["run", "--threads", "0", "x.yaml"], "compressor run: argument --threads: expected at least 1 thread"),
    (["bogus"], "compressor: argument COMMAND: invalid choice: 'bogus'"),
    (["plugins", "--kind", "optimiser"], "--kind: no kind 'optimiser'; did you mean 'optimizer'?"),
    (["run"], "compressor run: needs a SPEC file, or --resume RUN_DIR"),
])
def test_usage_errors_are_one_line_exit_2(argv: list[str], fragment: str, capsys) -> None:
    code, err = cli(capsys, *argv)
    assert code == 2 and fragment in one_line(err)


def test_error_text_has_no_stray_quotes() -> None:
    assert exception_text(KeyError("no split 'dev' (splits: train, valid, test)")) == \
        "no split 'dev' (splits: train, valid, test)"
    err = PluginError("p", "compressor_step_start", KeyError("no model 'x'"))
    assert str(err) == "plugin 'p' failed in hook 'compressor_step_start': KeyError: no model 'x'"


def test_traceback_on_request_keeps_the_exit_code(tmp_path: Path, capsys, monkeypatch) -> None:
    spec = tiny(tmp_path)
    spec["trainer"]["devce"] = "cpu"
    path = write_spec(tmp_path / "s.yaml", spec)
    monkeypatch.setenv("COMPRESSOR_TRACEBACK", "1")
    code, err = cli(capsys, "validate", path)
    assert code == 2 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith(f"error: {path}:") and "did you mean 'device'?" in err


# -- the table of exit codes in docs/cli.md, row by row ---------------------------------------------------------

def _readme_exit_codes() -> dict[int, str]:
    lines = (REPO / "docs" / "cli.md").read_text().split("Exit codes:", 1)[1].strip().splitlines()
    codes: dict[int, str] = {}
    for line in lines[2:]:  # after the header and its rule
        m = re.match(r"^\| (\d+) \| (.+) \|$", line)
        if m is None:
            break
        codes[int(m.group(1))] = m.group(2)
    return codes


def _signalled(tmp_path: Path, signum: int) -> subprocess.CompletedProcess:
    """A run sent ``signum`` once it has written its first checkpoint."""
    spec = tiny(tmp_path)
    spec["stages"][0]["epochs"] = 400  # long enough to be interrupted mid-training
    path = write_spec(tmp_path / "long.yaml", spec)
    # PYTHONFAULTHANDLER: a run that does not end after the signal is sent SIGABRT below, and its every
    # thread's stack lands in the failure's stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COMPRESSOR_PROGRESS": "lines", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "compressor", "run", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if list((tmp_path / "runs").glob("*/*/checkpoints/last.pt")):
                break
            time.sleep(0.05)
        proc.send_signal(signum)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=30)
            raise AssertionError(f"the run did not end within 120 s of signal {signum}; its stacks:\n{err}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _success(tmp_path: Path, capsys, monkeypatch) -> tuple[int, str]:
    return cli(capsys, "validate", SPECS / "tiny_kd.yaml")


def _unexpected_error(tmp_path: Path, capsys, monkeypatch) -> tuple[int, str]:
    spec = tiny(tmp_path)
    for model in ("teacher", "student"):  # labels reach 3: the task loss fails inside the engine
        spec[model]["num_classes"] = 3
    code, err = cli(capsys, "run", write_spec(tmp_path / "bug.yaml", spec))
    assert "IndexError" in one_line(err) and "COMPRESSOR_TRACEBACK=1" in err
    return code, err


def _plugin(source: str):
    def scenario(tmp_path: Path, capsys, monkeypatch) -> tuple[int, str]:
        import importlib.metadata as md

        from compressor.plugins import reset_plugins

        (tmp_path / "table_plugin_mod.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop("table_plugin_mod", None)
        ep = md.EntryPoint(name="table", value="table_plugin_mod", group="compressor.plugins")
        monkeypatch.setattr("compressor.plugins.md.entry_points", lambda group: [ep])
        reset_plugins()
        try:
            code, err = cli(capsys, "plugins")
        finally:
            reset_plugins()
        assert "plugin 'table'" in one_line(err)
        return code, err
    return scenario


def _bad_spec(tmp_path: Path, capsys, monkeypatch) -> tuple[int, str]:
    spec = tiny(tmp_path)
    spec["stages"][0]["epochs"] = -1
    path = write_spec(tmp_path / "bad.yaml", spec)
    code, err = cli(capsys, "run", path)
    assert f"{path}:" in one_line(err) and "stages[0].epochs" in err
    assert not (tmp_path / "runs").exists(), "bad input started work"
    return code, err


def _bad_command_line(tmp_path: Path, capsys, monkeypatch) -> tuple[int, str]:
    code, err = cli(capsys, "eval", "--split")
    assert "compressor eval: argument --split: expected one argument" in one_line(err)
    return code, err


def _refused_write(tmp_path: Path, capsys, monkeypatch) -> tuple[int, str]:
    """A run whose output directory the file system refuses (``/proc``): the path and the cause named."""
    spec = tiny(tmp_path)
    spec["output_dir"] = "/proc/compressor-runs"  # the kernel's file system: nothing can be created there
    code, err = cli(capsys, "run", write_spec(tmp_path / "spec.yaml", spec))
    assert "/proc/compressor-runs" in one_line(err)
    return code, err


def _signal(signum: int):
    def scenario(tmp_path: Path, capsys, monkeypatch) -> tuple[int, str]:
        done = _signalled(tmp_path, signum)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "compressor run --resume" in done.stderr  # it made progress: how to continue
        return done.returncode, errors[0]
    return scenario


#: (exit code, error class) -> scenario; the guide's rows are the codes, the classes its words
SCENARIOS = {
    (0, "success"): _success,
    (1, "unexpected error"): _unexpected_error,
    (1, "plugin fails to import"): _plugin("raise RuntimeError('half-written plugin')\n"),
    (2, "bad spec"): _bad_spec,
    (2, "bad command line"): _bad_command_line,
    (2, "plugin dependency not installed"): _plugin("import table_missing_dependency\n"),
    (2, "file system refused a write"): _refused_write,
    (130, "Ctrl-C"): _signal(signal.SIGINT),
    (143, "SIGTERM"): _signal(signal.SIGTERM),
}


def test_the_readme_table_is_the_one_walked() -> None:
    codes = _readme_exit_codes()
    assert set(codes) == {code for code, _ in SCENARIOS}, codes
    assert "interrupted" in codes[130].lower() and "sigterm" in codes[143].lower()
    assert "fails to import" in codes[1] and "command line" in codes[2] and "not installed" in codes[2]
    assert "ENOSPC" in codes[2] and "resumes once fixed" in codes[2]


@pytest.mark.parametrize("case", sorted(SCENARIOS), ids=lambda c: f"{c[0]}-{c[1].replace(' ', '_')}")
def test_exit_code_table(case: tuple[int, str], tmp_path: Path, capsys, monkeypatch) -> None:
    got, err = SCENARIOS[case](tmp_path, capsys, monkeypatch)
    assert got == case[0], err


class _Ended(Exception):
    pass


@pytest.mark.parametrize("code,skips_shutdown", [(0, False), (2, False), (130, True), (143, True)])
def test_the_console_script_ends_a_signalled_run_at_once(code: int, skips_shutdown: bool, monkeypatch) -> None:
    """Ctrl-C and SIGTERM end through ``os._exit`` (no interpreter shutdown to hang in); other codes through
    ``sys.exit``, so atexit handlers (trackers' uploads) still run."""
    import compressor.cli as cli_module

    def hard_exit(c: int) -> None:
        raise _Ended(c)

    monkeypatch.setattr(cli_module, "main", lambda: code)
    monkeypatch.setattr(cli_module.os, "_exit", hard_exit)
    with pytest.raises(_Ended if skips_shutdown else SystemExit) as ended:
        cli_module.entry()
    assert ended.value.args[0] == code
