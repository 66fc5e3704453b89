"""Hard bounds on what the hook reads, and the one way it reads a file.

The hook runs on every commit, including commits of files written by strangers
(a pull request checked by pre-commit in CI), so every input is bounded: the
size of each file, how much a document may grow through YAML aliases, how deep
it may nest, how far ``${VAR}`` may expand, how many files are imported or
globbed. Past a bound the hook says which bound and where, never hangs and
never runs out of memory.

Only regular files are read: the type is taken with ``stat`` before anything
is opened, so a FIFO never blocks and ``/dev/zero`` is never read; the file is
then opened non-blocking and checked again with ``fstat`` (it may have been
swapped in between), and at most the limit plus one byte is read.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

MAX_FILE_SIZE_ENV = "DEVREG_MAX_FILE_SIZE"
DEFAULT_MAX_FILE_SIZE = 1 << 20  # 1 MiB: real devspace.yaml files are a few KiB
# All files read for one config together (the config, its imports, the kubectl
# manifests it previews): this many times the per-file limit.
TOTAL_FILES_FACTOR = 16
# YAML nodes as written in one file (each costs about 120 bytes once read; the
# file-size limit keeps a file far below this unless it is raised), and nodes a
# document may gain through aliases on top ("billion laughs" stops here).
MAX_NODES = 1_000_000
MAX_ALIAS_NODES = 1_000_000
# Nesting of YAML collections (real configs and manifests stay under 40).
MAX_DEPTH = 200
# One ``${VAR}`` expansion, and all of a config's expansions together (characters).
MAX_VAR_LENGTH = 64 * 1024
MAX_VAR_TOTAL = 4 * 1024 * 1024
# Files imported by one config (``imports:``, following imports of imports).
MAX_IMPORTS = 100
# kubectl manifests previewed for one config, and directory entries looked at
# while matching their globs.
MAX_MANIFEST_FILES = 1000
MAX_GLOB_ENTRIES = 20_000

_SIZE = r"([0-9]+)\s*([KMG]i?B?|B)?"  # compiled when a size is given
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class Unreadable(Exception):
    """A file the hook will not read; the message says why (without the file name)."""


def parse_size(text: str) -> int:
    """``1048576``, ``512K``, ``4M``, ``4MiB``, ``1G`` -> bytes (binary units)."""
    m = re.fullmatch(_SIZE, text.strip(), re.ASCII | re.IGNORECASE)
    if m is None or int(m.group(1)) == 0:
        raise ValueError(text)
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) * _UNITS["" if unit == "B" else unit]


def human_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


class Limits(NamedTuple):
    """The bounds that can be changed (only the file size, from the environment)."""

    max_file_size: int = DEFAULT_MAX_FILE_SIZE

    @property
    def max_total_size(self) -> int:
        return self.max_file_size * TOTAL_FILES_FACTOR

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        """Raises ValueError with a message for a ``DEVREG_MAX_FILE_SIZE`` that is not a size."""
        text = env.get(MAX_FILE_SIZE_ENV)
        if not text:
            return cls()
        try:
            return cls(max_file_size=parse_size(text))
        except ValueError:
            raise ValueError(
                f"{MAX_FILE_SIZE_ENV}={text!r} is not a size; write a number of bytes "
                "or one with K, M or G (for example 8M)"
            ) from None


class ReadBudget:
    """What is left to read for one config: bytes across all its files."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.remaining = limits.max_total_size

    def read(self, path: Path, *, what: str = "file") -> str:
        """Read one regular UTF-8 file within the limits (raises :class:`Unreadable`)."""
        text, size = read_regular(
            path, limit=self.limits.max_file_size, left=self.remaining, what=what
        )
        self.remaining -= size
        return text


def _file_type(mode: int) -> str | None:
    """What a non-regular file is, in a user's words (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _check_size(size: int, limit: int, left: int, what: str) -> None:
    if size > limit:
        raise Unreadable(
            f"{what} is {human_size(size)}, larger than the {human_size(limit)} limit; "
            f"set {MAX_FILE_SIZE_ENV} (for example {MAX_FILE_SIZE_ENV}=8M) to check it anyway"
        )
    if size > left:
        raise Unreadable(
            f"{what} is {human_size(size)}, more than the {human_size(left)} left of the "
            f"limit on all files read for one config ({TOTAL_FILES_FACTOR} x "
            f"{MAX_FILE_SIZE_ENV}); raise {MAX_FILE_SIZE_ENV} to read it"
        )


def read_regular(
    path: Path, *, limit: int, left: int | None = None, what: str = "file"
) -> tuple[str, int]:
    """The text of a regular file of at most ``limit`` bytes (and at most ``left``,
    what remains of a budget), and its size in bytes.

    The type is checked with ``stat`` (following symlinks: a symlinked config
    is fine, a symlink to ``/dev/zero`` is not) before anything is opened."""
    left = limit if left is None else left
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Unreadable("no such file") from None
    except NotADirectoryError:
        raise Unreadable("no such file (a parent is not a directory)") from None
    except OSError as e:
        raise Unreadable(f"cannot read: {e.strerror}") from None
    except ValueError:  # a NUL in the name
        raise Unreadable("the path holds a NUL character") from None
    kind = _file_type(st.st_mode)
    if kind is not None:
        raise Unreadable(f"is {kind}, not a regular file")
    _check_size(st.st_size, limit, left, what)
    cap = min(limit, left)
    try:
        # Non-blocking: had a FIFO been swapped in since the stat, open returns at once.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise Unreadable(f"cannot read: {e.strerror}") from None
    try:
        kind = _file_type(os.fstat(fd).st_mode)
        if kind is not None:
            raise Unreadable(f"is {kind}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise Unreadable(f"cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    _check_size(size, limit, left, what)  # it may have grown since the stat
    try:
        return b"".join(chunks).decode("utf-8"), size
    except UnicodeDecodeError as e:
        raise Unreadable(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
