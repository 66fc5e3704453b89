"""``${VAR}`` substitution from static ``vars`` and the environment.

The hook never runs commands: ``$(cmd)`` expressions and variables whose value
comes from a command or a question stay unresolved, and the preview says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from hookpkg.yamlpos import Node

VAR_RE = re.compile(r"\$!?\{([A-Za-z0-9_.\-]+)(?::-([^}]*))?\}")
COMMAND_RE = re.compile(r"\$\((.+?)\)")
_MAX_DEPTH = 10


class Resolved(NamedTuple):
    value: str
    complete: bool  # False when an expression is left in ``value``


def has_expression(text: str) -> bool:
    return bool(VAR_RE.search(text) or COMMAND_RE.search(text))


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Vars:
    """Static variables of one config; the environment takes part as DevSpace's
    ``source: all`` says (plain and ``value:`` variables are fixed)."""

    def __init__(self, vars_node: Node | None, env: Mapping[str, str]) -> None:
        self.env = env
        self.fixed: dict[str, str] = {}
        self.defaults: dict[str, str] = {}
        self.dynamic: set[str] = set()  # command/question variables
        if vars_node is not None:
            self._read(vars_node)

    def _read(self, node: Node) -> None:
        entries: list[tuple[str, Node]] = []
        if node.is_map:
            entries = list(node.value.items())
        elif node.is_seq:  # the old list form: [{name: X, value: …}]
            for item in node.value:
                name = item.get("name")
                if name is not None and isinstance(name.value, str):
                    entries.append((name.value, item))
        for name, spec in entries:
            if spec.is_scalar and spec.value is not None:
                self.fixed[name] = _scalar_text(spec.value)
            elif spec.is_map:
                value, default = spec.get("value"), spec.get("default")
                if value is not None and value.is_scalar and value.value is not None:
                    self.fixed[name] = _scalar_text(value.value)
                elif spec.get("command") is not None or spec.get("commands") is not None:
                    self.dynamic.add(name)
                elif default is not None and default.is_scalar and default.value is not None:
                    self.defaults[name] = _scalar_text(default.value)
                else:
                    source = spec.get("source")
                    if source is None or source.value not in ("env", "all"):
                        self.dynamic.add(name)

    def lookup(self, name: str) -> str | None:
        if name in self.fixed:
            return self.fixed[name]
        if name in self.dynamic:
            return None
        if name in self.env:
            return self.env[name]
        return self.defaults.get(name)

    def resolve(self, text: str, depth: int = 0) -> Resolved:
        complete = not COMMAND_RE.search(text)

        def sub(m: re.Match[str]) -> str:
            nonlocal complete
            found = self.lookup(m.group(1))
            if found is None and m.group(2) is not None:
                found = m.group(2)
            if found is None:
                complete = False
                return m.group(0)
            if depth < _MAX_DEPTH and VAR_RE.search(found):
                inner = self.resolve(found, depth + 1)
                complete = complete and inner.complete
                return inner.value
            return found

        value = VAR_RE.sub(sub, text)
        return Resolved(value, complete)
