"""``${VAR}`` substitution from static ``vars`` and the environment.

The hook never runs commands: ``$(cmd)`` expressions and variables whose value
comes from a command or a question stay unresolved, and the preview says so.

Variables may refer to variables. Each one is expanded once (memoized, without
recursion), so ``A: ${B}${B}``, ``B: ${C}${C}`` … costs one pass per variable;
an expansion longer than :data:`~hookpkg.bounds.MAX_VAR_LENGTH` or all of them
together past :data:`~hookpkg.bounds.MAX_VAR_TOTAL` is an error, and so is a
cycle (``A: ${A}``, ``A: ${B}`` + ``B: ${A}``), named in the message — never a
silent fallback to a default.

DevSpace's escape (``pkg/util/vars``): a run of two or more ``$`` before
``{NAME}`` is no reference; each substitution pass takes one ``$`` off it.
DevSpace substitutes a field more than once — load-time fields (``images``,
``localRegistry``) twice, around its expression step; runtime fields (helm
values, selectors) in four passes, the second and fourth only for
``runtime.*`` — so ``$${X}`` is the literal ``${X}`` only when no variable
``X`` exists (else the next pass fills it in), and ``$$${X}`` is the literal
``${X}`` in a load-time field. A value that is all ``$$(cmd)`` becomes the
literal ``$(cmd)``; ``$$(`` is never a command. A name that an escape leaves
behind and that names no variable is taken as the literal the writer asked for
(complete), where a written ``${X}`` without a value is left unresolved.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal, NamedTuple

from hookpkg.bounds import MAX_VAR_LENGTH, MAX_VAR_TOTAL
from hookpkg.yamlpos import Node

# An inline default (``${X:-d}``) holds no braces: with them the pattern would
# rescan the rest of the line from every ``${`` (quadratic on hostile input).
# A run of dollars is matched from its first one only (the lookbehind), so a
# long run costs one scan. Groups: the dollars, the name, the default.
VAR_RE = re.compile(r"(?<!\$)(\$+)!?\{([A-Za-z0-9_.\-]+)(?::-([^{}]*))?\}", re.ASCII)
# DevSpace's escaped expression: the whole value (its ``^\$\$?#?!?\((.+)\)$``).
_ESCAPED_COMMAND = re.compile(r"\$\$#?!?\(.+\)", re.DOTALL)

# One step of DevSpace's substitution of a field: "fill" substitutes variables,
# "escapes" only takes a dollar off each escape (DevSpace's pass for
# ``runtime.*``, which the rewrite engine previews), "commands" is the
# expression step.
Step = Literal["fill", "escapes", "commands"]
LOAD_TIME: tuple[Step, ...] = ("fill", "commands", "fill")
RUNTIME: tuple[Step, ...] = ("fill", "escapes", "commands", "fill", "escapes")


class Resolved(NamedTuple):
    value: str
    complete: bool  # False when an expression is left in ``value``
    error: str | None = None  # a cycle or an expansion past a bound (then not complete)


def has_command(text: str) -> bool:
    """``$(…)`` on one line (what ``\\$\\((.+?)\\)`` finds), in one linear scan;
    ``$$(`` is DevSpace's escape, never a command."""
    start = text.find("$(")
    while start >= 0:
        if start > 0 and text[start - 1] == "$":
            start = text.find("$(", start + 2)  # escaped: the next one may be a command
            continue
        eol = text.find("\n", start)
        end = len(text) if eol < 0 else eol
        if text.find(")", start + 3, end) >= 0:
            return True
        if eol < 0:
            return False
        start = text.find("$(", eol)  # no ")" after this one on its line: nor after the rest
    return False


def escaped_command(text: str) -> bool:
    """The whole value is ``$$(…)``: DevSpace keeps it as the literal ``$(…)``."""
    return _ESCAPED_COMMAND.fullmatch(text) is not None


def has_expression(text: str) -> bool:
    return bool(VAR_RE.search(text)) or has_command(text) or escaped_command(text)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Vars:
    """Static variables of one config; the environment takes part as DevSpace's
    ``source: all`` says (plain and ``value:`` variables are fixed)."""

    def __init__(
        self,
        vars_node: Node | None,
        env: Mapping[str, str],
        *,
        files: Mapping[str, str] | None = None,
    ) -> None:
        self.env = env
        self.fixed: dict[str, str] = {}
        self.defaults: dict[str, str] = {}
        self.dynamic: set[str] = set()  # command/question variables
        self.nodes: dict[str, Node] = {}  # where each variable is defined
        self.files: Mapping[str, str] = files or {}  # and in which file (display name)
        # Expanded values, the cycles found, the variables whose own value
        # passes a bound, and the characters expanded so far (all of them).
        self._memo: dict[str, Resolved] = {}
        self.cycles: list[tuple[str, ...]] = []
        self.too_long: dict[str, str] = {}
        self._spent = 0
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
            self.nodes[name] = spec
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
        """The raw (unexpanded) value of a variable, or None when it has none here."""
        if name in self.fixed:
            return self.fixed[name]
        if name in self.dynamic:
            return None
        if name in self.env:
            return self.env[name]
        return self.defaults.get(name)

    def resolve(self, text: str, steps: tuple[Step, ...] = LOAD_TIME) -> Resolved:
        """``text`` as DevSpace's ``steps`` leave it, every ``${VAR}`` it can
        expand expanded (a load-time field unless ``steps`` says otherwise)."""
        if "$" not in text:
            return Resolved(text, True)
        complete = True
        first_fill = True
        for step in steps:
            if step == "commands":
                if escaped_command(text):
                    text = text[1:]
                elif has_command(text):
                    complete = False  # DevSpace runs it; the hook never does
                continue
            done = self._substitute(text, fill=step == "fill", first=first_fill)
            if done.error is not None:
                return done
            text, complete = done.value, complete and done.complete
            first_fill = first_fill and step != "fill"
        return Resolved(text, complete)

    def value_of(self, name: str) -> Resolved | None:
        """The expanded value of a variable (None when it has none here).

        Depth-first over the variables it refers to, with an explicit stack:
        a chain of any length costs no recursion, and meeting a variable that
        is still being expanded is a cycle."""
        if name in self._memo:
            return self._memo[name]
        raw = self.lookup(name)
        if raw is None:
            return None
        path: list[str] = [name]
        pending: list[Iterator[str]] = [self._refs(raw)]
        while path:
            dep = next(pending[-1], None)
            if dep is not None:
                if dep in self._memo or self.lookup(dep) is None:
                    continue
                if dep in path:
                    cycle = (*path[path.index(dep) :], dep)
                    self.cycles.append(cycle)
                    message = "variable cycle " + " -> ".join(cycle)
                    for n in path:
                        self._memo[n] = Resolved(self.lookup(n) or "", False, message)
                    break
                path.append(dep)
                pending.append(self._refs(self.lookup(dep) or ""))
                continue
            n = path.pop()
            pending.pop()
            value = self._substitute(self.lookup(n) or "")
            if value.error is not None and n not in self.too_long and self._own_error(n):
                self.too_long[n] = value.error
            self._memo[n] = value
        return self._memo[name]

    def _own_error(self, name: str) -> bool:
        """Whether ``name``'s error starts with it (none of its references has one)."""
        return not any(
            (r := self._memo.get(ref)) is not None and r.error is not None
            for ref in self._refs(self.lookup(name) or "")
        )

    @staticmethod
    def _refs(text: str) -> Iterator[str]:
        """The names ``text`` refers to (an escape, ``$${X}``, refers to none)."""
        return (m.group(2) for m in VAR_RE.finditer(text) if len(m.group(1)) == 1)

    def _substitute(self, text: str, *, fill: bool = True, first: bool = True) -> Resolved:
        """One pass over ``text`` (DevSpace's ``ParseString``): each escape loses
        a dollar; with ``fill``, each reference is replaced by its value. A
        reference without one stays; it leaves the result unresolved in the
        ``first`` pass (the writer meant a variable) or when it names a command
        or question variable, and is the literal text after that (an escape
        left it behind, or a variable's value brought it)."""
        complete = not first or not has_command(text)
        parts: list[str] = []
        length = 0
        pos = 0
        for m in VAR_RE.finditer(text):
            piece, known = self._piece(m, fill)
            if isinstance(known, Resolved):
                if known.error is not None:
                    return Resolved(text, False, known.error)
                complete = complete and known.complete
            elif known is False and (first or m.group(2) in self.dynamic):
                complete = False
            parts += (text[pos : m.start()], piece)
            length += m.start() - pos + len(piece)
            pos = m.end()
            if length > MAX_VAR_LENGTH:
                return Resolved(
                    text, False, f"expands past {MAX_VAR_LENGTH:,} characters (the limit)"
                )
        if not parts:
            return Resolved(text, complete)
        parts.append(text[pos:])
        length += len(text) - pos
        if length > MAX_VAR_LENGTH:
            return Resolved(text, False, f"expands past {MAX_VAR_LENGTH:,} characters (the limit)")
        self._spent += length
        if self._spent > MAX_VAR_TOTAL:
            return Resolved(
                text,
                False,
                f"variable expansions pass {MAX_VAR_TOTAL:,} characters in all (the limit)",
            )
        return Resolved("".join(parts), complete)

    def _piece(self, m: re.Match[str], fill: bool) -> tuple[str, Resolved | bool]:
        """What one match becomes, and what is known of it: its variable's
        value, True (an escape, a default, or left alone in this pass) or
        False (a reference without a value)."""
        dollars, name, default = m.group(1), m.group(2), m.group(3)
        if len(dollars) > 1:
            return m.group(0)[1:], True
        if not fill:
            return m.group(0), True
        found = self._memo.get(name)
        if found is None and self.lookup(name) is not None:
            found = self.value_of(name)  # a name first met here
        if found is not None:
            return found.value, found
        if default is not None:
            return default, True
        return m.group(0), False

    def problems(self) -> Iterator[tuple[str, str]]:
        """``(name, message)`` for every variable defined here that cannot be
        expanded: each cycle once (at its first variable), and each value that
        passes a bound where it starts."""
        for name in self.nodes:
            self.value_of(name)
        reported: set[frozenset[str]] = set()
        for cycle in self.cycles:
            members = frozenset(cycle)
            if members not in reported and cycle[0] in self.nodes:
                reported.add(members)
                yield (
                    cycle[0],
                    "variable cycle " + " -> ".join(cycle) + "; a variable cannot refer to itself",
                )
        for name, message in self.too_long.items():
            if name in self.nodes:
                yield name, f"${{{name}}} {message}"
