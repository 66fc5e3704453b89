"""What devreg writes to stderr, as ``-q``/``-v`` and ``--color`` say.

One setting per run (:func:`settings`, entered by ``main`` around the
command), as pre-commit's ``color`` and ``output`` modules do: the lines
come from deep inside the cluster and build rooms, and threading a printer
through every call would change every signature for one flag. Progress lines
(``waiting for the registry pod …``) go through :func:`progress`, hidden by
``-q``; what devreg runs and asks (commands, API requests) through
:func:`detail`, shown by ``-v``; :func:`problem` lines (a failed build, a
warning) are always shown.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, TextIO

from hookpkg.color import SEVERITY_COLORS, paint
from hookpkg.errors import Diagnostic

ColorSetting = Literal["auto", "always", "never"]
COLOR_CHOICES: tuple[ColorSetting, ...] = ("auto", "always", "never")

QUIET, NORMAL, VERBOSE = -1, 0, 1


def use_color(setting: str, stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """``always``/``never`` as said; ``auto``: a terminal, unless ``NO_COLOR``
    is set to anything (no-color.org) or ``TERM=dumb``. The flag wins over
    ``NO_COLOR``, as no-color.org asks of command-line arguments."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@dataclass(frozen=True)
class Console:
    """The output settings of one run."""

    verbosity: int = NORMAL  # QUIET (-q), NORMAL, VERBOSE (-v)
    color: ColorSetting = "auto"

    @property
    def quiet(self) -> bool:
        return self.verbosity <= QUIET

    @property
    def verbose(self) -> bool:
        return self.verbosity >= VERBOSE

    def flags(self) -> list[str]:
        """The same settings as command-line flags (for the detached watcher)."""
        return ["-q"] if self.quiet else ["-v"] if self.verbose else []


_current = Console()


@contextlib.contextmanager
def settings(console: Console) -> Iterator[None]:
    """Use ``console`` for what runs inside (a run of ``main``); the previous
    settings again after it (tests call ``main`` many times in one process)."""
    global _current
    previous, _current = _current, console
    try:
        yield
    finally:
        _current = previous


def current() -> Console:
    return _current


def _write(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def progress(line: str) -> None:
    """A step of the work; ``-q`` hides it."""
    if not _current.quiet:
        _write(line)


def detail(line: str) -> None:
    """What devreg runs or asks; only with ``-v``."""
    if _current.verbose:
        _write(line)


def problem(line: str, severity: str | None = "error") -> None:
    """A failure, a warning or a config's note: always shown, its severity word
    (``error:``, ``warning:``, ``note:``) in colour on a terminal; a line without
    one (``[app] FAILED: …``) in colour as a whole. ``severity=None``: a line
    that belongs to a problem (a failed build's last output), uncoloured."""
    color = severity is not None and use_color(_current.color, sys.stderr)
    if color and severity is not None:
        word = f"{severity}:"
        before, found, after = line.partition(word)
        tint = SEVERITY_COLORS.get(severity, "")
        line = before + paint(word, tint, True) + after if found else paint(line, tint, True)
    _write(line)


def diagnostics(
    found: Iterable[Diagnostic], *, loaded: bool, log: Callable[[str], None] | None = None
) -> None:
    """A config loader's diagnostics: every one when the config did not load, else
    all but its notes; to ``log`` (the watcher's log) or as problems on stderr
    (shown even with ``-q``)."""
    for d in found:
        if d.severity != "note" or not loaded:
            if log is None:
                problem(d.format(), d.severity)
            else:
                log(d.format())
