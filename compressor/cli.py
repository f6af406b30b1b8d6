"""The ``compressor`` command line: run, validate, plugins, eval, export, data.

Exit codes (the README's table):

* 0: success;
* 1: a plugin or component failed (the message names it), or an unexpected error; ``COMPRESSOR_TRACEBACK=1``
  shows the traceback;
* 2: bad input: a spec, argument, file or data item at fault (one line naming file, line and key path), an
  environment whose packages do not load together, a run directory in use, a loss that diverged;
* 130: interrupted (Ctrl-C); 143: terminated (SIGTERM). Either way temporary files are removed and a run
  that made progress can be resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from compressor.errors import PluginError, Terminated, UserError
from compressor.interrupts import unwinding

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compressor", description="Compress speech models: distil, replace, export.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a spec: data -> teacher -> compressed student -> evaluation -> export")
    r.add_argument("spec", nargs="?", default=None, help="YAML spec file (not with --resume)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a spec value, e.g. --set stages[0].epochs=2 (repeatable)")
    r.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a killed run from its last checkpoint, with the spec it started with")

    v = sub.add_parser("validate", help="validate a spec without doing any work")
    v.add_argument("spec")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")

    pl = sub.add_parser("plugins", help="list discovered plugins, their hooks and argument schemas")
    pl.add_argument("--json", action="store_true", help="machine-readable output")

    e = sub.add_parser("eval", help="evaluate the models of a finished run")
    e.add_argument("run_dir")
    e.add_argument("--split", default="test")
    e.add_argument("--models", nargs="*", default=None)
    e.add_argument("--out", default=None, metavar="FILE.json",
                   help="also write the metrics as JSON (outside run directories, or in RUN_DIR/eval/)")
    e.add_argument("--force", action="store_true", help="replace a previous --out file of compressor eval")

    x = sub.add_parser("export", help="export a finished run's student for on-device inference")
    x.add_argument("run_dir")
    x.add_argument("--out", default=None, help="output directory (default: RUN_DIR/export)")
    x.add_argument("--force", action="store_true", help="replace an existing output directory")

    d = sub.add_parser("data", help="build speech corpora and print their statistics", add_help=False)
    d.add_argument("args", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        with unwinding():
            return _dispatch(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except PluginError as e:
        if os.environ.get("COMPRESSOR_TRACEBACK"):
            raise
        print(f"error: {e} (set COMPRESSOR_TRACEBACK=1 for the traceback)", file=sys.stderr)
        return EXIT_FAULT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except SystemExit as e:
        if args.command == "data":  # its own argument parser's --help and usage errors
            raise
        if os.environ.get("COMPRESSOR_TRACEBACK"):
            raise
        print(f"error: sys.exit({e.code!r}) was called inside a component, outside any plugin hook "
              f"(set COMPRESSOR_TRACEBACK=1 for the traceback)", file=sys.stderr)
        return EXIT_FAULT
    except Exception as e:  # an unexpected failure: one line, the traceback on request
        if os.environ.get("COMPRESSOR_TRACEBACK"):
            raise
        from compressor.envcheck import diagnose

        clash = diagnose(e)  # packages that do not load together are the environment's fault, not a bug
        if clash is not None:
            print(f"error: {clash}", file=sys.stderr)
            return clash.exit_code
        text = (str(e).strip().splitlines() or [""])[0]
        print(f"error: {type(e).__name__}: {text} (set COMPRESSOR_TRACEBACK=1 for the traceback)", file=sys.stderr)
        return EXIT_FAULT


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        from compressor.engine import run_spec

        if args.resume is None and args.spec is None:
            raise UserError("run needs a SPEC file, or --resume RUN_DIR to continue a killed run")
        if args.resume is None and not Path(args.spec).exists():
            raise UserError(f"spec file not found: {args.spec}")
        run_dir = run_spec(args.spec, args.overrides, resume=args.resume)
        if os.environ.get("RANK", "0") != "0":
            return 0
        print(f"run finished: {run_dir}")
        summary = run_dir / "summary.md"
        if summary.exists():
            print(f"summary: {summary}")
        return 0
    if args.command == "validate":
        from compressor.spec import load_spec

        loaded = load_spec(args.spec, args.overrides)
        spec = loaded.spec
        stages = ", ".join(f"{s.name}[{'+'.join(r.name for r in s.plugins) or 'plain'}]" for s in spec.stages)
        print(f"{args.spec}: valid spec '{spec.name}' — task {spec.task.name}, data {spec.data.name}, "
              f"models {', '.join(spec.all_models())}; stages: {stages}")
        return 0
    if args.command == "plugins":
        return _plugins(args.json)
    if args.command == "eval":
        from compressor.engine import evaluate_run
        from compressor.evalout import check_eval_output, write_eval_output

        out = check_eval_output(Path(args.run_dir), Path(args.out), args.force) if args.out else None
        results = evaluate_run(args.run_dir, args.split, args.models)
        for name, metrics in results.items():
            shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            print(f"{name} ({args.split}): {shown}")
        if out is not None:
            write_eval_output(out, Path(args.run_dir), args.split, results, args.force)
            print(f"metrics written to {out}")
        return 0
    if args.command == "export":
        from compressor.export.api import export_run

        out = export_run(Path(args.run_dir), Path(args.out) if args.out else None, args.force)
        print(f"exported to {out}")
        return 0
    if args.command == "data":
        from compressor.data.cli import main as data_main

        return data_main(args.args)
    raise UserError(f"unknown command {args.command}")


def schema_rows(schema: type[BaseModel]) -> list[dict[str, Any]]:
    rows = []
    for name, f in schema.model_fields.items():
        default = f.default if f.default is not PydanticUndefined else (
            "<required>" if f.default_factory is None else f.default_factory())
        ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
        rows.append({"name": name, "type": ann, "default": default, "doc": f.description or ""})
    return rows


def _hook_methods(obj: Any) -> list[str]:
    return sorted(n for n in dir(obj) if n.startswith("compressor_") and hasattr(getattr(obj, n), "compressor_impl"))


def _plugins(as_json: bool) -> int:
    from compressor.plugins import get_plugins

    plugins = get_plugins()
    out = []
    for info in plugins.loaded:
        components = []
        for entry in plugins.registry.entries():
            if entry.package != f"{info.package} ({info.name})":
                continue
            item = {"kind": entry.kind, "name": entry.name, "doc": entry.doc, "args": schema_rows(entry.args)}
            if entry.kind == "strategy":
                item["hooks"] = _hook_methods(entry.factory)
            components.append(item)
        out.append({"plugin": info.name, "package": info.package, "version": info.version,
                    "module": getattr(info.module, "__name__", str(info.module)),
                    "hooks": plugins.hooks_of(info.module), "components": components})
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    for p in out:
        print(f"{p['plugin']}  ({p['package']} {p['version']}, {p['module']})")
        print(f"  hooks: {', '.join(p['hooks']) or '-'}")
        for c in p["components"]:
            hooks = f"  hooks: {', '.join(c['hooks'])}" if c.get("hooks") else ""
            print(f"  {c['kind']} {c['name']}: {c['doc']}{hooks}")
            for a in c["args"]:
                doc = f"  — {a['doc']}" if a["doc"] else ""
                print(f"      {a['name']}: {a['type']} = {a['default']!r}{doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
