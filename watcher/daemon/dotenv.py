"""``.devreg.env`` (SPEC §5): ``export NAME=value`` lines, written atomically.

Values are limited to ``[A-Za-z0-9._:/@-]`` so the file needs no quoting and
reads the same in bash, zsh, sh, python-dotenv and direnv; a value outside
that set is refused, never quoted. The file is replaced with a rename of a
temporary file in the same directory, so a reader sees the old file or the
new one, never a part.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from hookpkg.errors import FatalError
from hookpkg.project import ENV_FILE as ENV_FILE  # re-exported: callers name it here
from hookpkg.variables import valid_value
from watcher.safefile import read_private, write_private

HEADER = (
    "# Written by devreg: the images the cluster should run. Do not edit.\n"
    "# Load it with: . ./.devreg.env\n"
)
_NAME = re.compile(r"[A-Z_][A-Z0-9_]*\Z")
_LINE = re.compile(r"export ([A-Z_][A-Z0-9_]*)=([A-Za-z0-9._:/@-]*)\Z")


_PROFILES = "# Profiles: "


def render(variables: Mapping[str, str], *, profiles: Sequence[str] = ()) -> str:
    """The file's text; raises :class:`FatalError` for a name or value that
    cannot be written safely. ``profiles``, the DevSpace profiles the images were
    built with, go in a comment as a JSON list (escaped: a name cannot break
    out of the comment into the shell)."""
    lines = [HEADER]
    if profiles:
        lines.append(_PROFILES + json.dumps(list(profiles)) + "\n")
    for name in sorted(variables):
        value = variables[name]
        if not _NAME.match(name):
            raise FatalError(f"{ENV_FILE}: refusing variable name {name!r}")
        if not valid_value(value):
            raise FatalError(
                f"{ENV_FILE}: refusing {name}={value!r}: values are limited to "
                "[A-Za-z0-9._:/@-] so the file can be sourced without quoting"
            )
        lines.append(f"export {name}={value}\n")
    return "".join(lines)


def parse(text: str) -> dict[str, str]:
    """Read back a file :func:`render` wrote (other lines are ignored)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def profiles_of(text: str) -> tuple[str, ...]:
    """The profiles :func:`render` recorded (none for a file without the line)."""
    for line in text.splitlines():
        if line.startswith(_PROFILES):
            try:
                names = json.loads(line.removeprefix(_PROFILES))
            except ValueError:
                return ()
            if isinstance(names, list) and all(isinstance(n, str) for n in names):
                return tuple(names)
            return ()
        if not line.startswith("#"):
            break
    return ()


def read_profiles(path: Path) -> tuple[str, ...]:
    return profiles_of(read_private(path) or "")


def read(path: Path) -> dict[str, str]:
    """The variables of ``path``; nothing when it is missing or not a regular file (a
    planted FIFO would block, a link to /dev/zero fill memory)."""
    return parse(read_private(path) or "")


def write_atomic(path: Path, text: str) -> bool:
    """Replace ``path`` with ``text`` atomically; returns False when the file
    already had exactly this content (nothing is written then)."""
    if read_private(path) == text:
        return False
    write_private(path, text, sync=True)
    return True


def write(path: Path, variables: Mapping[str, str], *, profiles: Sequence[str] = ()) -> bool:
    return write_atomic(path, render(variables, profiles=profiles))


def to_json(variables: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(variables.items())), indent=2) + "\n"
