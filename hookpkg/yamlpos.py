"""YAML with positions: every node keeps its 1-based line and column.

PyYAML's composer already records ``start_mark`` for every node; we walk the
node graph once, construct scalars with the safe constructor (so YAML 1.1
booleans, ints and nulls mean what PyYAML says) and keep the marks, the raw
scalar text and, for mappings, the key nodes. Duplicate keys, which PyYAML
silently lets the last one win, are reported at the second key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from hookpkg.bounds import MAX_ALIAS_NODES, MAX_DEPTH, MAX_NODES
from hookpkg.errors import Diagnostic, Severity, describe_char, shown

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
_NO_KEYS: Mapping[str, Any] = MappingProxyType({})


@dataclass(slots=True, eq=False)
class Node:
    """A YAML node: ``value`` is ``dict[str, Node]``, ``list[Node]`` or a scalar."""

    value: Any
    line: int
    col: int
    tag: str = _STR_TAG
    text: str = ""  # the scalar as written (before construction)
    # mapping key nodes; every other node shares one empty mapping (a dict per
    # node would be most of the memory of a large file)
    keys: Mapping[str, Node] = field(default_factory=lambda: _NO_KEYS)

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
        """The value without positions (for code that only needs data). A node
        reached through several aliases becomes one shared object."""
        done: dict[int, Any] = {}
        stack: list[tuple[Node, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in done:
                continue
            v = node.value
            if not isinstance(v, (dict, list)):
                done[id(node)] = v
            elif not expanded:
                stack.append((node, True))
                children = v.values() if isinstance(v, dict) else v
                stack.extend((c, False) for c in children if id(c) not in done)
            elif isinstance(v, dict):
                done[id(node)] = {k: done[id(c)] for k, c in v.items()}
            else:
                done[id(node)] = [done[id(c)] for c in v]
        return done[id(self)]

    def walk(self, path: str = "") -> Iterator[tuple[str, Node]]:
        """Yield ``(yaml_path, node)`` for this node and every node below it, in
        document order. A node reached through several aliases is yielded once,
        at its first path: it is one place in the file."""
        seen: set[int] = set()
        stack: list[tuple[str, Node]] = [(path, self)]
        while stack:
            here, node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            yield here, node
            v = node.value
            if isinstance(v, dict):
                stack.extend(reversed([(join(here, k), c) for k, c in v.items()]))
            elif isinstance(v, list):
                stack.extend(reversed([(f"{here}[{i}]", c) for i, c in enumerate(v)]))

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
            return f"number {shown(self.text)[1:-1]}"
        if isinstance(v, str):
            return f"string {shown(v)}"
        return f"{type(v).__name__} {shown(self.text)}"


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
    and the diagnostics of a readable document (duplicate keys, scalars that
    do not read as their tag says); raises :class:`YamlError` on bad syntax or
    past a bound (aliases, depth)."""
    builder = _Builder(text, filename, single=True)
    roots = builder.documents()
    return (roots[0] if roots else None), builder.diagnostics


def load_all(text: str, filename: str) -> list[Node]:
    """Every document of a multi-document file (Kubernetes manifests)."""
    return [r for r in _Builder(text, filename, single=False).documents() if r is not None]


# Outside YAML's printable set (1.2, section 5.1; the complement, which
# compiles ten times faster). libyaml refuses these with an offset into its
# own buffer; only then is the text searched, for the line and the column.
_NON_PRINTABLE = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]"


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def _unprintable(text: str, filename: str) -> Diagnostic | None:
    m = re.search(_NON_PRINTABLE, text)
    if m is None:
        return None
    line, col = position(text, m.start())
    what = "a NUL byte" if m.group() == "\x00" else f"the character {describe_char(m.group())}"
    return Diagnostic(
        filename,
        line,
        col,
        "error",
        "",
        f"{what} is not allowed in YAML; remove it (inside double quotes, write it as an escape)",
    )


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
    return Diagnostic(filename, line, col, "error", "", msg)


def _at(filename: str, mark: Any, message: str) -> YamlError:
    return YamlError(Diagnostic(filename, mark.line + 1, mark.column + 1, "error", "", message))


_IMPLICIT = yaml.resolver.Resolver.yaml_implicit_resolvers
_INT_TAG = "tag:yaml.org,2002:int"
_NULL_TAG = "tag:yaml.org,2002:null"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
# Tags a scalar can carry; the others (!!map, !!seq, !!set …) need a collection.
_SCALAR_TAGS = frozenset(
    {
        _STR_TAG,
        _NULL_TAG,
        _BOOL_TAG,
        _INT_TAG,
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:binary",
        _TIMESTAMP_TAG,
    }
)
_COLLECTION_TAGS = frozenset(
    {
        _MAP_TAG,
        _SEQ_TAG,
        "tag:yaml.org,2002:set",
        "tag:yaml.org,2002:omap",
        "tag:yaml.org,2002:pairs",
    }
)
_CONSTRUCT_ERRORS = (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError, OverflowError)
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)", re.ASCII)


def _resolve_plain(value: str) -> str:
    """The tag YAML 1.1 gives a plain scalar (PyYAML's resolver, without a node)."""
    for tag, regexp in _IMPLICIT.get(value[:1], ()):
        if regexp.match(value):
            return str(tag)
    return _STR_TAG


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org") else tag


_NODE_EVENTS = (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)


class _Frame:
    """A collection being built: its node, and for a mapping the key waiting for its value."""

    __slots__ = ("node", "keys", "key", "merged", "anchor", "size", "index")

    def __init__(self, node: Node, keys: dict[str, Node] | None, anchor: str | None) -> None:
        self.node = node
        self.keys = keys  # None for a sequence
        self.key: Node | None = None
        self.merged: dict[str, Node] | None = None
        self.anchor = anchor
        self.size = 1  # nodes below and including this one, aliases expanded
        self.index = 0  # the next sequence index (for paths)


class _Builder:
    """Nodes from the parser's events, without recursion: nesting depth and
    alias expansion are counted as they come and refused past their bounds,
    at the node or alias that passes them."""

    def __init__(self, text: str, filename: str, *, single: bool) -> None:
        self.text = text
        self.filename = filename
        self.single = single
        self.diagnostics: list[Diagnostic] = []
        # anchor -> (node, expanded size); size None while the node is still open
        self.anchors: dict[str, tuple[Node, int | None]] = {}
        self.alias_nodes = 0
        self.nodes = 0
        self.stack: list[_Frame] = []

    def documents(self) -> list[Node | None]:
        loader: Any = _Loader(self.text)
        docs: list[Node | None] = []
        try:
            while True:
                event = loader.get_event()
                if isinstance(event, yaml.StreamEndEvent):
                    return docs
                if isinstance(event, yaml.DocumentStartEvent):
                    if self.single and docs:
                        raise _at(
                            self.filename,
                            event.start_mark,
                            "devspace.yaml must hold a single YAML document; "
                            "remove the extra '---'",
                        )
                    docs.append(self._document(loader))
        except yaml.MarkedYAMLError as e:
            raise YamlError(_syntax_diagnostic(e, self.text, self.filename)) from None
        except yaml.reader.ReaderError as e:
            bad = _unprintable(self.text, self.filename)
            if bad is None:  # pragma: no cover - libyaml and the scan agree on the set
                bad = Diagnostic(self.filename, 1, 1, "error", "", f"invalid YAML: {e.reason}")
            raise YamlError(bad) from None
        except yaml.YAMLError as e:  # pragma: no cover - errors without a mark
            raise YamlError(
                Diagnostic(self.filename, 1, 1, "error", "", f"invalid YAML: {e}")
            ) from None
        finally:
            loader.dispose()

    def _document(self, loader: Any) -> Node | None:
        self.anchors.clear()  # anchors do not cross documents
        root: Node | None = None
        stack = self.stack
        while True:
            event = loader.get_event()
            kind = type(event)
            if kind in _NODE_EVENTS:
                self.nodes += 1
                if self.nodes > MAX_NODES:
                    raise _at(
                        self.filename,
                        event.start_mark,
                        f"more than {MAX_NODES:,} YAML nodes in one file; "
                        "devreg stops reading here",
                    )
            if kind is yaml.ScalarEvent:
                node = self._scalar(event)
                if event.anchor is not None:
                    self._anchor(event, node, 1)
                done: tuple[Node, int] = (node, 1)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                self._open(event, is_map=kind is yaml.MappingStartEvent)
                continue
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                done = self._close()
            elif kind is yaml.AliasEvent:
                done = self._alias(event)
            elif kind is yaml.DocumentEndEvent:
                return root
            else:  # pragma: no cover - the parser sends nothing else inside a document
                continue
            if not stack:
                root = done[0]
            else:
                self._attach(stack[-1], done[0], done[1])

    def _open(self, event: Any, *, is_map: bool) -> None:
        """A mapping or sequence starts: its node becomes the open frame."""
        if len(self.stack) >= MAX_DEPTH:
            raise _at(
                self.filename,
                event.start_mark,
                f"nested deeper than {MAX_DEPTH} levels; devreg stops reading here",
            )
        mark = event.start_mark
        keys: dict[str, Node] | None = {} if is_map else None
        node = Node(
            {} if is_map else [],
            mark.line + 1,
            mark.column + 1,
            _MAP_TAG if is_map else _SEQ_TAG,
        )
        if keys is not None:
            node.keys = keys
        if event.anchor is not None:
            self._anchor(event, node, None)
        self.stack.append(_Frame(node, keys, event.anchor))

    def _close(self) -> tuple[Node, int]:
        """The open mapping or sequence ends: merged keys fill what it did not
        set, its anchor gets its size; returns the node and its size."""
        frame = self.stack.pop()
        if frame.merged:
            for k, v in frame.merged.items():
                frame.node.value.setdefault(k, v)
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (frame.node, frame.size)
        return (frame.node, frame.size)

    def _anchor(self, event: Any, node: Node, size: int | None) -> None:
        if event.anchor is None:
            return
        if event.anchor in self.anchors and self.anchors[event.anchor][1] is not None:
            first = self.anchors[event.anchor][0]
            raise _at(
                self.filename,
                event.start_mark,
                f"invalid YAML: found duplicate anchor {event.anchor!r} "
                f"(first defined at line {first.line}); rename one of them",
            )
        self.anchors[event.anchor] = (node, size)

    def _alias(self, event: Any) -> tuple[Node, int]:
        found = self.anchors.get(event.anchor)
        if found is None:
            raise _at(
                self.filename,
                event.start_mark,
                f"invalid YAML: found undefined alias {event.anchor!r}",
            )
        node, size = found
        if size is None:
            raise _at(
                self.filename,
                event.start_mark,
                f"alias *{event.anchor} refers to the node that contains it (anchored at "
                f"line {node.line}): a recursive alias cannot be expanded",
            )
        self.alias_nodes += size
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise _at(
                self.filename,
                event.start_mark,
                f"alias *{event.anchor} ({size:,} nodes) takes the document past "
                f"{MAX_ALIAS_NODES:,} nodes reached through aliases; devreg stops "
                "reading here (aliases that multiply like this are a 'billion laughs')",
            )
        return node, size

    def _attach(self, frame: _Frame, node: Node, size: int) -> None:
        frame.size += size
        if frame.keys is None:
            frame.node.value.append(node)
            frame.index += 1
            return
        key = frame.key
        if key is None:
            frame.key = node
            return
        frame.key = None
        if key.tag == _MERGE_TAG:
            merged = frame.merged if frame.merged is not None else {}
            frame.merged = merged
            for source in node.value if isinstance(node.value, list) else [node]:
                if isinstance(source.value, dict):
                    for k, v in source.value.items():
                        merged.setdefault(k, v)
            return
        if isinstance(key.value, (dict, list)):
            name = f"<{key.kind_name()}>"
        else:
            name = key.text if isinstance(key.value, str) else str(key.value)
        value: dict[str, Node] = frame.node.value
        if name in value:
            first = frame.keys[name]
            self.diagnostics.append(
                Diagnostic(
                    self.filename,
                    key.line,
                    key.col,
                    "error",
                    join(self._path(), name),
                    f"duplicate key {name!r} (first defined at line {first.line}); "
                    "YAML keeps only the last one, so remove one of them",
                )
            )
        frame.keys[name] = key
        value[name] = node

    def _path(self, *, here: bool = False) -> str:
        """The YAML path of the innermost open collection (for a diagnostic), or
        with ``here`` of the node about to be attached to it."""
        path = ""
        frames = self.stack if here else self.stack[:-1]
        for parent in frames:
            if parent.keys is None:
                path = f"{path}[{parent.index}]"
            elif parent.key is not None:
                key = parent.key
                path = join(path, key.text if isinstance(key.value, str) else str(key.value))
        return path

    def _scalar(self, event: Any) -> Node:
        text: str = event.value
        mark = event.start_mark
        tag = event.tag
        explicit = tag is not None and tag != "!"
        if not explicit:
            if not event.implicit[0]:
                return Node(text, mark.line + 1, mark.column + 1, _STR_TAG, text)
            if len(text) < 19 and _DECIMAL.fullmatch(text):  # the common int, quickly
                return Node(int(text), mark.line + 1, mark.column + 1, _INT_TAG, text)
            tag = _resolve_plain(text)
        if tag == _STR_TAG:
            return Node(text, mark.line + 1, mark.column + 1, _STR_TAG, text)
        if tag not in _SCALAR_TAGS:
            if explicit and tag in _COLLECTION_TAGS:
                self._unreadable_scalar(event, text, tag, explicit)
                return Node(text, mark.line + 1, mark.column + 1, _STR_TAG, text)
            # a local tag (``!Ref``) or the merge key: keep the text
            return Node(text, mark.line + 1, mark.column + 1, tag, text)
        try:
            if not text.isascii() and tag != _NULL_TAG:
                raise ValueError("non-ASCII")  # int('٣') is 3: YAML means ASCII digits
            node = yaml.ScalarNode(tag, text, mark, event.end_mark, event.style)
            value = _constructor.yaml_constructors[tag](_constructor, node)
        except _CONSTRUCT_ERRORS:
            self._unreadable_scalar(event, text, tag, explicit)
            return Node(text, mark.line + 1, mark.column + 1, _STR_TAG, text)
        return Node(value, mark.line + 1, mark.column + 1, tag, text)

    def _unreadable_scalar(self, event: Any, text: str, tag: str, explicit: bool) -> None:
        value = shown(text, 40)
        mark = event.start_mark
        if explicit:
            message = (
                f"{value} cannot be read as {_short_tag(tag)}; fix the value or remove the tag"
            )
            severity: Severity = "error"
        elif tag == _TIMESTAMP_TAG:
            message = (
                f"{value} looks like a YAML timestamp but is not a valid date; it is read "
                "as a string (quote it to say so)"
            )
            severity = "warning"
        else:
            message = (
                f"{value} looks like a YAML {_short_tag(tag)[2:]} but cannot be read as "
                "one; it is read as a string (quote it to say so)"
            )
            severity = "warning"
        self.diagnostics.append(
            Diagnostic(
                self.filename,
                mark.line + 1,
                mark.column + 1,
                severity,
                self._path(here=True),
                message,
            )
        )


def is_yaml11_bool_word(node: Node) -> bool:
    """``yes``/``no``/``on``/``off``: booleans in YAML 1.1, strings in YAML 1.2."""
    return node.tag == _BOOL_TAG and node.text.lower() not in ("true", "false")
