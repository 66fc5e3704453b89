"""Files devreg owns in a working tree (``.devreg/``, ``.devreg.env``), read, written and
appended to (``watch.log``) without trusting what a cloned repository may have planted
there: never through a link, never a FIFO or a device, never more than a sane size."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path

# A state file larger than this is not devreg's: it is reported as unreadable,
# never read into memory (a planted link to /dev/zero, a huge file).
MAX_STATE_FILE = 4 * 1024 * 1024


def write_private(path: Path, text: str, *, sync: bool = False) -> None:
    """Replace ``path`` with ``text`` atomically, never through a link: the temporary
    file is created exclusively and without following links (a planted
    ``watch.pid -> /etc/passwd`` is replaced as a link, its target untouched).
    ``sync``: on disk before the rename (a file other programs read)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_private(path: Path) -> str | None:
    """``path``'s text when it is a regular file of a sane size, else None (a FIFO, a
    device, a link, a directory are never opened for reading)."""
    data = read_private_bytes(path)
    return None if data is None else data.decode("utf-8", "replace")


def read_private_bytes(path: Path, limit: int = MAX_STATE_FILE) -> bytes | None:
    """``path``'s bytes when it is a regular file of at most ``limit`` bytes, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
        return data if len(data) <= limit else None
    finally:
        os.close(fd)


def append_private(path: Path) -> int:
    """A descriptor appending to ``path`` (created when missing), never through a link:
    a link, FIFO, socket or device planted there is removed first, its target
    untouched; what appears there meanwhile makes the open fail (``O_NOFOLLOW``),
    never block (``O_NONBLOCK``: a FIFO without a reader). OSError when ``path`` is a
    directory or cannot be written."""
    with contextlib.suppress(FileNotFoundError):
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            os.unlink(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return fd


def read_tail(path: Path, limit: int = 64 * 1024) -> str:
    """The last ``limit`` bytes of ``path`` when it is a regular file, else "" (a log's
    end, however long the log has grown; never a FIFO, a device or a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        os.lseek(fd, max(0, info.st_size - limit), os.SEEK_SET)
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)
