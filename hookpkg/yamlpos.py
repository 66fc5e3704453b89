"""YAML with positions: every node keeps its 1-based line and column.

PyYAML's composer already records ``start_mark`` for every node; we walk the
node graph once, construct scalars with the safe constructor (so YAML 1.1
booleans, ints and nulls mean what PyYAML says) and keep the marks, the raw
scalar text and, for mappings, the key nodes. Duplicate keys, which PyYAML
silently lets the last one win, are reported at the second key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from hookpkg.errors import Diagnostic

try:  # the C loader is several times faster on large files
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_constructor = yaml.constructor.SafeConstructor()


@dataclass(slots=True, eq=False)
class Node:
    """A YAML node: ``value`` is ``dict[str, Node]``, ``list[Node]`` or a scalar."""

    value: Any
    line: int
    col: int
    tag: str = _STR_TAG
    text: str = ""  # the scalar as written (before construction)
    keys: dict[str, Node] = field(default_factory=dict)  # mapping key nodes

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_seq(self) -> bool:
        return isinstance(self.value, list)

    @property
    def is_scalar(self) -> bool:
        return not isinstance(self.value, (dict, list))

    def get(self, key: str) -> Node | None:
        if isinstance(self.value, dict):
            return self.value.get(key)
        return None

    def plain(self) -> Any:
        """The value without positions (for code that only needs data)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def walk(self, path: str = "") -> Iterator[tuple[str, Node]]:
        """Yield ``(yaml_path, node)`` for this node and every node below it."""
        yield path, self
        if isinstance(self.value, dict):
            for k, v in self.value.items():
                yield from v.walk(join(path, k))
        elif isinstance(self.value, list):
            for i, v in enumerate(self.value):
                yield from v.walk(f"{path}[{i}]")

    def kind_name(self) -> str:
        """How the node reads to a user in a type error."""
        v = self.value
        if isinstance(v, dict):
            return "a mapping"
        if isinstance(v, list):
            return "a list"
        if v is None:
            return "null"
        if isinstance(v, bool):
            return f"boolean {self.text or v}"
        if isinstance(v, int):
            return f"integer {v}"
        if isinstance(v, float):
            return f"number {self.text}"
        if isinstance(v, str):
            return f"string {v!r}"
        return f"{type(v).__name__} {self.text!r}"


def join(path: str, key: str) -> str:
    """``images`` + ``app`` -> ``images.app`` (keys with dots get brackets)."""
    part = f'["{key}"]' if ("." in key or " " in key or not key) else key
    if not path:
        return part
    return f"{path}{part}" if part.startswith("[") else f"{path}.{part}"


class YamlError(Exception):
    """A YAML syntax error, already turned into a diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def load(text: str, filename: str) -> tuple[Node | None, list[Diagnostic]]:
    """Parse one YAML document. Returns the root (``None`` for an empty file)
    and the duplicate-key diagnostics; raises :class:`YamlError` on bad syntax."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        raise YamlError(_syntax_diagnostic(e, text, filename)) from None
    except yaml.YAMLError as e:  # pragma: no cover - errors without a mark
        raise YamlError(Diagnostic(filename, 1, 1, "error", "", f"invalid YAML: {e}")) from None
    if root is None:
        return None, []
    builder = _Builder(filename)
    return builder.build(root, ""), builder.diagnostics


def load_all(text: str, filename: str) -> list[Node]:
    """Every document of a multi-document file (Kubernetes manifests)."""
    try:
        roots = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as e:
        raise YamlError(_syntax_diagnostic(e, text, filename)) from None
    except yaml.YAMLError as e:  # pragma: no cover
        raise YamlError(Diagnostic(filename, 1, 1, "error", "", f"invalid YAML: {e}")) from None
    builder = _Builder(filename)
    return [builder.build(r, "") for r in roots if r is not None]


def _syntax_diagnostic(e: yaml.MarkedYAMLError, text: str, filename: str) -> Diagnostic:
    mark = e.problem_mark or e.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = e.problem or "invalid YAML"
    lines = text.splitlines()
    source_line = lines[line - 1] if 0 < line <= len(lines) else ""
    if (
        "\t" in problem
        or "'\\t'" in problem
        or ("cannot start any token" in problem and "\t" in source_line[:col])
    ):
        msg = "a tab character is not allowed in YAML indentation; indent with spaces"
        tab = source_line.find("\t")
        if tab >= 0:
            col = tab + 1
    else:
        context = f"{e.context}, " if e.context else ""
        msg = f"invalid YAML: {context}{problem}"
        if "expected a single document" in f"{e.context} {problem}":
            msg = "devspace.yaml must hold a single YAML document; remove the extra '---'"
    return Diagnostic(filename, line, col, "error", "", msg)


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.diagnostics: list[Diagnostic] = []
        self._done: dict[int, Node] = {}  # aliases share nodes

    def build(self, node: yaml.Node, path: str) -> Node:
        done = self._done.get(id(node))
        if done is not None:
            return done
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if isinstance(node, yaml.MappingNode):
            out = Node({}, line, col, _MAP_TAG)
            self._done[id(node)] = out
            self._mapping(node, out, path)
            return out
        if isinstance(node, yaml.SequenceNode):
            out = Node([], line, col, _SEQ_TAG)
            self._done[id(node)] = out
            out.value.extend(self.build(v, f"{path}[{i}]") for i, v in enumerate(node.value))
            return out
        try:
            value = _constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            value = node.value  # an odd tag or timestamp: keep the text
        out = Node(value, line, col, node.tag, node.value)
        self._done[id(node)] = out
        return out

    def _mapping(self, node: yaml.MappingNode, out: Node, path: str) -> None:
        merged: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in _merge_sources(value_node):
                    src = self.build(source, path)
                    if isinstance(src.value, dict):
                        for k, v in src.value.items():
                            merged.setdefault(k, v)
                continue
            key = self.build(key_node, path)
            name = key.text if isinstance(key.value, str) else str(key.value)
            if isinstance(key.value, (dict, list)):
                name = f"<{key.kind_name()}>"
            if name in out.value:
                first = out.keys[name]
                self.diagnostics.append(
                    Diagnostic(
                        self.filename,
                        key.line,
                        key.col,
                        "error",
                        join(path, name),
                        f"duplicate key {name!r} (first defined at line {first.line}); "
                        "YAML keeps only the last one, so remove one of them",
                    )
                )
            out.keys[name] = key
            out.value[name] = self.build(value_node, join(path, name))
        for k, v in merged.items():
            out.value.setdefault(k, v)


def _merge_sources(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return [node]


def is_yaml11_bool_word(node: Node) -> bool:
    """``yes``/``no``/``on``/``off``: booleans in YAML 1.1, strings in YAML 1.2."""
    return node.tag == _BOOL_TAG and node.text.lower() not in ("true", "false")
