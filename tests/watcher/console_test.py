"""watcher/console.py: one output setting per run, and what each kind of line does
under -q, -v and --color. (``use_color``'s table of settings, NO_COLOR and TERM is in
tests/watcher/cli/main_test.py; here it meets a real terminal.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TextIO

import pytest

from hookpkg.errors import Diagnostic
from watcher import console
from watcher.console import NORMAL, QUIET, VERBOSE, Console


@pytest.mark.parametrize(
    ("verbosity", "quiet", "verbose", "flags"),
    [
        pytest.param(QUIET, True, False, ["-q"], id="quiet"),
        pytest.param(NORMAL, False, False, [], id="normal"),
        pytest.param(VERBOSE, False, True, ["-v"], id="verbose"),
    ],
)
def test_console_flags_carry_the_setting(
    verbosity: int, quiet: bool, verbose: bool, flags: list[str]
) -> None:
    c = Console(verbosity)
    assert (c.quiet, c.verbose, c.flags()) == (quiet, verbose, flags)


def test_settings_apply_inside_and_the_previous_ones_come_back() -> None:
    before = console.current()
    outer, inner = Console(VERBOSE, "always"), Console(QUIET, "never")
    with console.settings(outer):
        assert console.current() is outer
        with pytest.raises(RuntimeError), console.settings(inner):
            assert console.current() is inner
            raise RuntimeError("a command fails")
        assert console.current() is outer
    assert console.current() is before


@pytest.mark.parametrize(
    ("verbosity", "shown"),
    [
        pytest.param(QUIET, ["problem"], id="quiet-only-problems"),
        pytest.param(NORMAL, ["progress", "problem"], id="normal"),
        pytest.param(VERBOSE, ["progress", "detail", "problem"], id="verbose-everything"),
    ],
)
def test_which_lines_each_verbosity_shows(
    verbosity: int, shown: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with console.settings(Console(verbosity, "never")):
        console.progress("progress")
        console.detail("detail")
        console.problem("problem")
    out, err = capsys.readouterr()
    assert (out, err.splitlines()) == ("", shown)


@pytest.mark.parametrize(
    ("line", "severity", "shown"),
    [
        pytest.param(
            "devspace.yaml:1:1: error: bad",
            "error",
            "devspace.yaml:1:1: \x1b[31m\x1b[1merror:\x1b[0m bad",
            id="the-severity-word",
        ),
        pytest.param(
            "warning: registry slow", "warning", "\x1b[33mwarning:\x1b[0m registry slow", id="warn"
        ),
        pytest.param(
            "[app] FAILED: exit 1",
            "error",
            "\x1b[31m\x1b[1m[app] FAILED: exit 1\x1b[0m",
            id="whole",
        ),
        pytest.param("  #5 ERROR: no such file", None, "  #5 ERROR: no such file", id="plain"),
    ],
)
def test_problem_in_colour(
    line: str, severity: str | None, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with console.settings(Console(NORMAL, "always")):
        console.problem(line, severity)
    assert capsys.readouterr().err == shown + "\n"
    with console.settings(Console(NORMAL, "never")):
        console.problem(line, severity)
    assert capsys.readouterr().err == line + "\n"


@pytest.fixture
def terminal() -> Iterator[TextIO]:
    """A real pseudo-terminal's end, as a text stream (its other end open meanwhile)."""
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w") as stream:
            yield stream
    finally:
        os.close(leader)


def test_auto_colours_a_real_terminal_and_not_a_pipe(terminal: TextIO) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as pipe:
        assert console.use_color("auto", pipe, {}) is False
    assert console.use_color("auto", terminal, {}) is True
    assert console.use_color("auto", terminal, {"NO_COLOR": "1"}) is False


_FOUND = [
    Diagnostic("devspace.yaml", 3, 5, "error", "images.app", "bad"),
    Diagnostic("devspace.yaml", 4, 1, "warning", "", "odd"),
    Diagnostic("devspace.yaml", 9, 7, "note", "vars", "unused"),
]


@pytest.mark.parametrize(
    ("loaded", "shown"),
    [
        pytest.param(True, ["error", "warning"], id="loaded-notes-left-out"),
        pytest.param(False, ["error", "warning", "note"], id="not-loaded-everything"),
    ],
)
def test_a_loaders_diagnostics_to_stderr_or_to_a_log(
    loaded: bool, shown: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    expected = [d.format() for d in _FOUND if d.severity in shown]
    with console.settings(Console(QUIET, "never")):  # problems: shown even with -q
        console.diagnostics(_FOUND, loaded=loaded)
    assert capsys.readouterr().err.splitlines() == expected
    logged: list[str] = []
    console.diagnostics(_FOUND, loaded=loaded, log=logged.append)
    assert logged == expected
    assert capsys.readouterr() == ("", "")
