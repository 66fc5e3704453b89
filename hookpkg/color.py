"""ANSI colours for the text reporters: pure (whether to colour is the caller's
decision: ``--color``, ``NO_COLOR`` and the terminal, in ``watcher.console``)."""

from __future__ import annotations

RED = "\033[31m"
YELLOW = "\033[33m"
CYAN = "\033[36m"
BOLD = "\033[1m"
_RESET = "\033[0m"

SEVERITY_COLORS = {"error": RED + BOLD, "warning": YELLOW, "note": CYAN}


def paint(text: str, color: str, enabled: bool) -> str:
    return f"{color}{text}{_RESET}" if enabled else text


def severity(word: str, enabled: bool) -> str:
    """``error`` / ``warning`` / ``note`` in its colour."""
    return paint(word, SEVERITY_COLORS.get(word, ""), enabled and word in SEVERITY_COLORS)
