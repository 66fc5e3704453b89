"""hookpkg/errors.py: the one expected-error type, the diagnostic record, and how
values from a file read in a message (escaped, named, cut short)."""

from __future__ import annotations

import re

import pytest

from hookpkg import yamlpos
from hookpkg.errors import (
    Diagnostic,
    FatalError,
    ascii_note,
    describe_char,
    printable,
    shown,
)


def test_fatal_error_is_exit_1_unless_told() -> None:
    plain = FatalError("no such file")
    usage = FatalError("--jobs must be at least 1", exit_code=2)
    assert (str(plain), plain.exit_code) == ("no such file", 1)
    assert (str(usage), usage.exit_code) == ("--jobs must be at least 1", 2)
    assert isinstance(plain, RuntimeError)


def test_diagnostic_at_a_yaml_node_points_at_its_line_and_column() -> None:
    root, diagnostics = yamlpos.load("images:\n  app:\n    image: ghcr.io/acme/app\n", "d.yaml")
    assert root is not None and not diagnostics
    node = root.value["images"].value["app"].value["image"]
    d = Diagnostic.at("d.yaml", node, "warning", "images.app.image", "looks odd")
    assert d == Diagnostic("d.yaml", 3, 12, "warning", "images.app.image", "looks odd")


@pytest.mark.parametrize(
    ("diagnostic", "text"),
    [
        pytest.param(
            Diagnostic("devspace.yaml", 3, 5, "error", "images.app", "image is required"),
            "devspace.yaml:3:5: error: images.app: image is required",
            id="with-path",
        ),
        pytest.param(
            Diagnostic("devspace.yaml", 1, 1, "note", "", "empty file"),
            "devspace.yaml:1:1: note: empty file",
            id="without-path",
        ),
        pytest.param(
            Diagnostic("d.yaml", 2, 3, "warning", "images.\x1b[2Jx", "value '\u202eevil'"),
            r"d.yaml:2:3: warning: images.\x1b[2Jx: value '\u202eevil'",
            id="escapes-from-the-file-shown-not-sent",
        ),
    ],
)
def test_diagnostic_format(diagnostic: Diagnostic, text: str) -> None:
    assert diagnostic.format() == text


@pytest.mark.parametrize(
    ("raw", "shown_as"),
    [
        pytest.param("plain text: ünïcödé ok", "plain text: ünïcödé ok", id="printable-unchanged"),
        pytest.param("a\tb\nc", "a\tb\nc", id="tab-and-newline-kept"),
        pytest.param("\x1b]8;;http://x\x07link", r"\x1b]8;;http://x\x07link", id="osc-link"),
        pytest.param("\x00\x7f\x9b", r"\x00\x7f\x9b", id="nul-del-csi"),
        pytest.param("\r", r"\r", id="carriage-return"),
        pytest.param("\u202eabc\u2066", r"\u202eabc\u2066", id="bidi-override-and-isolate"),
        pytest.param("\u200e\u061c\u2028", r"\u200e\u061c\u2028", id="marks-and-line-separator"),
    ],
)
def test_printable(raw: str, shown_as: str) -> None:
    assert printable(raw) == shown_as


def test_printable_leaves_no_control_or_bidi_character_in_the_first_planes() -> None:
    """Whatever a file holds, what reaches the terminal is free of C0/C1 controls
    (but tab and newline) and of the bidi controls, and the rest is kept as is."""
    unsafe = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
    escaped = 0
    for code in range(0x3000):
        ch = chr(code)
        out = printable(f"<{ch}>")
        assert unsafe.search(out) is None, hex(code)
        if out != f"<{ch}>":
            escaped += 1
            assert out.isascii() and out.startswith("<\\"), (hex(code), out)
    # C0 but tab and LF (30), DEL, C1 (32), ALM, LRM and RLM, U+2028-U+202E (7), the isolates (4)
    assert escaped == 30 + 1 + 32 + 1 + 2 + 7 + 4


@pytest.mark.parametrize(
    ("ch", "described"),
    [
        pytest.param("\x00", "U+0000 (NUL)", id="nul"),
        pytest.param("\x1b", "U+001B (ESC)", id="esc"),
        pytest.param("\x7f", "U+007F (DEL)", id="del"),
        pytest.param("\ufeff", "U+FEFF (BYTE ORDER MARK)", id="bom"),
        pytest.param("\x01", "U+0001 (control character ^A)", id="c0-control"),
        pytest.param("\u0445", "U+0445 (CYRILLIC SMALL LETTER HA)", id="named-letter"),
        pytest.param("\x85", "U+0085", id="c1-without-a-name"),
    ],
)
def test_describe_char(ch: str, described: str) -> None:
    assert describe_char(ch) == described


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param("short", "'short'", id="short-string"),
        pytest.param("x" * 60, repr("x" * 60), id="string-at-the-limit"),
        pytest.param("x" * 61, f"{'x' * 60!r}… (61 characters)", id="string-over-the-limit"),
        pytest.param("y" * 1_000_000, f"{'y' * 60!r}… (1,000,000 characters)", id="1-mb"),
        pytest.param(42, "42", id="number"),
        pytest.param(list(range(100)), repr(list(range(100)))[:80] + "…", id="long-list"),
    ],
)
def test_shown(value: object, text: str) -> None:
    assert shown(value) == text


def test_shown_with_another_limit() -> None:
    assert shown("abcdef", limit=3) == "'abc'… (6 characters)"


@pytest.mark.parametrize(
    ("value", "note"),
    [
        pytest.param("ghcr.io/acme/app", "", id="ascii"),
        pytest.param("", "", id="empty"),
        pytest.param(
            "acme/\u0430pp", "; 'а' is U+0430 (CYRILLIC SMALL LETTER A), not ASCII", id="look-alike"
        ),
        pytest.param(
            "v\u0661\u00e9", "; '١' is U+0661 (ARABIC-INDIC DIGIT ONE), not ASCII", id="first-only"
        ),
    ],
)
def test_ascii_note(value: str, note: str) -> None:
    assert ascii_note(value) == note
