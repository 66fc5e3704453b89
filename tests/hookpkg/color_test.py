"""hookpkg/color.py: ANSI colours for the text reporters, applied only when asked."""

from __future__ import annotations

import pytest

from hookpkg.color import BOLD, CYAN, RED, SEVERITY_COLORS, YELLOW, paint, severity


def test_paint() -> None:
    assert paint("failed", RED, True) == "\x1b[31mfailed\x1b[0m"
    assert paint("failed", RED, False) == "failed"


def test_each_severity_has_its_colour() -> None:
    assert SEVERITY_COLORS == {"error": RED + BOLD, "warning": YELLOW, "note": CYAN}


@pytest.mark.parametrize(
    ("word", "enabled", "shown"),
    [
        pytest.param("error", True, "\x1b[31m\x1b[1merror\x1b[0m", id="error"),
        pytest.param("warning", True, "\x1b[33mwarning\x1b[0m", id="warning"),
        pytest.param("note", True, "\x1b[36mnote\x1b[0m", id="note"),
        pytest.param("error", False, "error", id="disabled"),
        pytest.param("hint", True, "hint", id="unknown-word-stays-plain"),
    ],
)
def test_severity(word: str, enabled: bool, shown: str) -> None:
    assert severity(word, enabled) == shown
