"""The layers of compressor/: the import-linter contracts of pyproject.toml hold, and no import circle is left
anywhere in compressor/ (imports inside functions and under TYPE_CHECKING count)."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from support import REPO

PACKAGE = REPO / "compressor"


def contracts() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]


def named_modules(config: dict) -> set[str]:
    names: set[str] = set()
    for contract in config["contracts"]:
        for key in ("layers", "source_modules", "forbidden_modules"):
            for entry in contract.get(key, []):
                names.update(n.strip() for n in entry.replace(":", "|").split("|"))
    return names


def module_file(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def skip_before_the_move() -> None:
    missing = sorted(n for n in named_modules(contracts()) if module_file(n) is None)
    if missing:
        pytest.skip(f"the contracts name packages that do not exist yet ({', '.join(missing)}): "
                    "the modules have not been moved into their layers")


def test_the_import_contracts_hold() -> None:
    skip_before_the_move()
    if importlib.util.find_spec("importlinter") is None:
        pytest.skip("import-linter is not installed (the dev extra)")
    # lint-imports, as CI runs it (its console script may not be on PATH in a virtual environment never activated)
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; "
                           "c(['--no-cache', '--config', 'pyproject.toml'])"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def import_graph() -> dict[str, set[str]]:
    """Module -> the compressor modules it imports anywhere in its file (a parent package and its modules aside)."""
    files = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = f

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, f in files.items():
        package = module if f.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.startswith("compressor") else None
                if target and target != module and not target.startswith(module + ".") \
                        and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_in_compressor() -> None:
    skip_before_the_move()
    found = circles(import_graph())
    assert not found, "import circles (imports inside functions count):\n" + "\n".join(
        f"  {len(c)} modules: {', '.join(c)}" for c in sorted(found, key=len, reverse=True))


def test_the_circle_check_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
