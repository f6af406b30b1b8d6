"""Bounded, safe YAML for specs and ``--set`` values.

``yaml.safe_load`` never builds Python objects, but it still trusts the document's size: a 1 KB file of
nested aliases (a "billion laughs" bomb) stands for billions of nodes once anything walks it as a tree, a
few thousand nested brackets overflow Python's recursion limit, and a duplicated key silently keeps its
last value. :func:`load_yaml` refuses all of these while the document is composed, in time linear in the
file's size:

* at most :data:`MAX_BYTES` bytes of text;
* at most :data:`MAX_NODES` nodes and :data:`MAX_CHARS` scalar characters *after alias expansion* (each
  alias counts the full size of the node it repeats, so the count is what a tree walk would visit);
* nesting at most :data:`MAX_DEPTH` levels deep; aliases to a node that contains them are refused;
* duplicate keys in a mapping, naming the lines of both.

The result is a plain tree (aliased nodes are copied, so editing one path never changes another) and a map
from key paths to line numbers for error messages.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

try:  # libyaml's parser: linear time on deeply nested flow collections, where PyYAML's scanner is quadratic
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser as _PyParser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _PyParser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _PyParser.__init__(self)

#: Largest spec file read (bytes). A spec is a page of YAML; the largest shipped one is about 5 KB.
MAX_BYTES = 1 << 20
#: Nodes (mappings, lists, scalars) after alias expansion.
MAX_NODES = 100_000
#: Characters of all scalars after alias expansion.
MAX_CHARS = 4 << 20
#: Nesting depth of mappings and lists.
MAX_DEPTH = 100

_MERGE = "tag:yaml.org,2002:merge"


class YamlError(Exception):
    """A document that is not acceptable YAML for a spec; ``line`` is 1-based when known.

    ``malformed`` is true when the text is not (plain-data) YAML at all, false when it is YAML that breaks a
    limit or repeats a key (a ``--set`` value that is not YAML is taken as text; one that breaks a limit is not).
    """

    def __init__(self, message: str, line: int | None = None, malformed: bool = False) -> None:
        self.message = message
        self.line = line
        self.malformed = malformed
        super().__init__(message)


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


class _BoundedLoader(Composer, _Parser, SafeConstructor, Resolver):
    """A safe loader (PyYAML's composer and safe constructor on libyaml's events) that counts expanded nodes
    and depth while composing and refuses duplicate keys."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0
        self._chars = 0
        self._sizes: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, chars) of its expansion

    def _count(self, nodes: int, chars: int, mark: Any) -> None:
        self._nodes += nodes
        self._chars += chars
        if self._nodes > MAX_NODES:
            raise YamlError(f"the document expands to more than {MAX_NODES:,} nodes (aliases count once per "
                            f"use); a spec is far smaller: is this an alias bomb?", _line(mark))
        if self._chars > MAX_CHARS:
            raise YamlError(f"the document expands to more than {MAX_CHARS:,} characters of values (aliases "
                            f"count once per use)", _line(mark))

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            size = self._sizes.get(event.anchor)
            if size is None and event.anchor in self.anchors:
                raise YamlError(f"alias *{event.anchor} refers to a node that contains it (a recursive "
                                f"structure)", _line(event.start_mark))
            nodes, chars = size or (1, 0)
            self._count(nodes, chars, event.start_mark)
            return super().compose_node(parent, index)
        event = self.peek_event()
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlError(f"nesting deeper than {MAX_DEPTH} levels", _line(event.start_mark))
            anchor = getattr(event, "anchor", None)
            before = (self._nodes, self._chars)
            value = getattr(event, "value", None)
            self._count(1, len(value) if isinstance(value, str) else 0, event.start_mark)
            node = super().compose_node(parent, index)
            if anchor is not None:
                self._sizes[anchor] = (self._nodes - before[0], self._chars - before[1])
            return node
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int | None] = {}
            for key, _ in node.value:
                if key.tag == _MERGE or not isinstance(key, yaml.ScalarNode):
                    continue
                ident = (key.tag, key.value)
                if ident in seen:
                    first = seen[ident]
                    at = f" (first at line {first}, again at line {_line(key.start_mark)})" if first else ""
                    raise YamlError(f"duplicate key '{key.value}'{at}: each key may appear once",
                                    _line(key.start_mark))
                seen[ident] = _line(key.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> tuple[Any, dict[tuple, int]]:
    """Parse ``text`` within the limits above; return a plain tree and a map key path -> line.

    Raises :class:`YamlError` (with the line when known) for malformed YAML, a YAML tag that would build a
    Python object, an exceeded limit or a duplicate key.
    """
    if len(text) > MAX_BYTES:
        raise YamlError(f"larger than {MAX_BYTES // 1024} KiB: a spec is a page of YAML")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    except YamlError:
        raise
    except yaml.constructor.ConstructorError as e:
        tag = re.search(r"tag '([^']+)'", str(e))
        if tag:
            raise YamlError(f"YAML tag '{tag.group(1)}' is not allowed: specs are plain data and never "
                            f"construct objects", _line(e.problem_mark), malformed=True) from None
        raise YamlError(f"malformed YAML: {e.problem or e}", _line(e.problem_mark), malformed=True) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).split("\n")[0]
        if "maximum nesting depth" in str(e):  # libyaml's own bound, far above ours
            raise YamlError(f"nesting deeper than {MAX_DEPTH} levels", _line(mark)) from None
        raise YamlError(f"malformed YAML: {problem}", _line(mark), malformed=True) from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise YamlError(f"a value YAML cannot convert: {str(e).splitlines()[0]}") from None
    finally:
        if hasattr(loader, "dispose"):
            loader.dispose()
    return plain_tree(data), _line_map(node)


def plain_tree(value: Any) -> Any:
    """A copy of parsed YAML with every shared (aliased) container copied, so the result is a tree."""
    if isinstance(value, dict):
        return {k: plain_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_tree(v) for v in value]
    return value


def _line_map(root: Any) -> dict[tuple, int]:
    """Key path -> 1-based line, for every path of the (bounded) expanded tree."""
    lines: dict[tuple, int] = {}
    stack: list[tuple[Any, tuple]] = [(root, ())] if root is not None else []
    while stack:
        node, path = stack.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = path + (key.value,)
                lines[sub] = key.start_mark.line + 1
                stack.append((value, sub))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((value, path + (i,)) for i, value in enumerate(node.value))
    return lines
