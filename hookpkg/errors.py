"""The one expected-error type and the diagnostic record."""

from __future__ import annotations

import re
from typing import Any, Literal, NamedTuple, Protocol

Severity = Literal["error", "warning", "note"]


class FatalError(RuntimeError):
    """An error the user can fix; reported without a traceback (exit 1).

    ``exit_code`` 2 marks usage errors and missing or unreadable files.
    """

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Positioned(Protocol):
    """Anything with a 1-based line and column (a YAML node)."""

    @property
    def line(self) -> int: ...

    @property
    def col(self) -> int: ...


class Diagnostic(NamedTuple):
    """One finding about one node of one file (1-based line and column)."""

    file: str
    line: int
    col: int
    severity: Severity
    path: str
    message: str

    @classmethod
    def at(
        cls, file: str, node: Positioned, severity: Severity, path: str, message: str
    ) -> Diagnostic:
        """A diagnostic pointing at ``node`` in ``file``."""
        return cls(file, node.line, node.col, severity, path, message)

    def format(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        path = f"{self.path}: " if self.path else ""
        return printable(f"{where}: {self.severity}: {path}{self.message}")


# --- how values read in a message --------------------------------------------

# C0/C1 controls, and the bidirectional overrides and isolates that reorder
# what a terminal shows ("Trojan Source"): never written raw to a terminal.
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)


def printable(text: str) -> str:
    """``text`` for a terminal: control characters (an ESC sequence from a key
    or a value in a file) become visible escapes; tabs and newlines stay."""
    if _UNPRINTABLE.search(text) is None:
        return text
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


def describe_char(ch: str) -> str:
    r"""``'\x00'`` -> ``U+0000 (NUL)``: a character named without printing it."""
    import unicodedata  # only when there is something to describe

    names = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL", 0xFEFF: "BYTE ORDER MARK"}
    name = names.get(ord(ch)) or unicodedata.name(ch, "")
    if not name and ord(ch) < 0x20:
        name = f"control character ^{chr(ord(ch) + 64)}"
    return f"U+{ord(ch):04X}" + (f" ({name})" if name else "")


def shown(value: Any, limit: int = 60) -> str:
    """``repr`` of a value for a message, cut short: a hostile 1 MB string
    must not become a 1 MB diagnostic."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit + 20 else text[: limit + 20] + "…"


def ascii_note(value: str) -> str:
    """``; 'х' is U+0445 (CYRILLIC SMALL LETTER HA), not ASCII`` for grammar that
    Kubernetes and the distribution spec define as ASCII (a look-alike or a
    Unicode digit reads like the real thing), else ``""``."""
    for ch in value:
        if not ch.isascii():
            return f"; {ch!r} is {describe_char(ch)}, not ASCII"
    return ""
