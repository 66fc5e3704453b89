"""The one expected-error type and the diagnostic record."""

from __future__ import annotations

from typing import Literal, NamedTuple, Protocol

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
        return f"{where}: {self.severity}: {path}{self.message}"
