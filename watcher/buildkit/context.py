"""Pack a build's inputs into one tar stream for the ``buildkitd`` container.

Layout (what :mod:`watcher.buildkit.buildctl` points ``--local`` at)::

    context/<every file and directory that .dockerignore keeps>
    dockerfile/<Dockerfile name>
    dockerfile/<Dockerfile name>.dockerignore   (only when it exists)

The file list comes from the pipeline (the same list that made the content
tag), so buildkitd sees exactly the files the tag was computed from. The
Dockerfile travels in its own directory because it may lie outside the
context. The Dockerfile-specific ignore file goes beside it because BuildKit
prefers it over ``context/.dockerignore``; re-applying the chosen rules to
files they already kept changes nothing, whereas applying the other file could
drop files the tag counted.

Modification times. buildctl sends a local directory to buildkitd
incrementally: a file whose size and mtime equal those of the copy buildkitd
kept from the previous build (of any image: the cache is shared by the local
name ``context``) is not sent again. The sidecar's busybox ``tar`` keeps whole
seconds only, so two versions of a file saved within one second with the same
size would look alike and the build would use the stale one. The
:class:`MtimeLedger` remembers which content went out under which (size,
mtime) and moves a colliding mtime forward by a second, so that different
bytes never travel under the same stat.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import stat
import tarfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from watcher.buildkit.buildctl import CONTEXT_DIR, DOCKERFILE_DIR

IGNORE_SUFFIX = ".dockerignore"
# Versions remembered per path: parallel builds may each hold a copy of the
# shared context in buildkitd, so more than the last one can be live.
LEDGER_DEPTH = 8


class Packed(NamedTuple):
    data: bytes
    dockerfile_name: str
    files: int  # regular files and links sent (directories not counted)
    size: int  # bytes of file content sent
    moved_mtimes: int  # files whose mtime the ledger moved (see module doc)


class MtimeLedger:
    """Which content was sent under which (size, whole-second mtime), per
    archive path. One per buildkitd (the backend keeps it); thread-safe."""

    def __init__(self, depth: int = LEDGER_DEPTH) -> None:
        self.depth = depth
        self._sent: dict[str, collections.deque[tuple[int, int, bytes]]] = {}
        self._lock = threading.Lock()

    def mtime_for(self, arcname: str, size: int, mtime: int, digest: bytes) -> int:
        """``mtime``, or the next second no other content of this path and
        size was sent under."""
        with self._lock:
            history = self._sent.setdefault(arcname, collections.deque(maxlen=self.depth))
            taken = {m for s, m, d in history if s == size and d != digest}
            while mtime in taken:
                mtime += 1
            if (size, mtime, digest) not in history:
                history.append((size, mtime, digest))
            return mtime


def _info(arcname: str, st: os.stat_result) -> tarfile.TarInfo:
    """A tar header from an ``lstat`` (not ``TarFile.gettarinfo``: it looks up
    user and group names for every file, which the other side ignores)."""
    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    # Owners mean nothing on the other side (the sidecar runs as uid 1000 and
    # COPY resets them) and would leak local user names.
    info.uid = info.gid = 0
    return info


def pack(
    context: Path,
    files: Sequence[str],
    dockerfile: Path,
    *,
    ledger: MtimeLedger | None = None,
) -> Packed:
    """The tar (GNU format: busybox ``tar`` in the sidecar reads its long
    names) of ``files`` (relative POSIX paths under ``context``) and the
    Dockerfile. A file that vanished since the list was made is skipped: the
    change that removed it starts a newer build anyway. Sockets and other
    special files are skipped, as Docker does."""
    ledger = ledger if ledger is not None else MtimeLedger()
    buf = io.BytesIO()
    counts = [0, 0, 0]  # files, bytes, moved mtimes
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_dir_info(CONTEXT_DIR))
        for rel in files:
            path = os.path.join(context, rel)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            arcname = f"{CONTEXT_DIR}/{rel}"
            if stat.S_ISREG(st.st_mode):
                _add_regular(tar, path, arcname, st, ledger, counts)
            elif stat.S_ISDIR(st.st_mode):
                info = _info(arcname, st)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info = _info(arcname, st)
                info.type = tarfile.SYMTYPE
                try:
                    info.linkname = os.readlink(path)
                except FileNotFoundError:
                    continue
                tar.addfile(info)
                counts[0] += 1
        tar.addfile(_dir_info(DOCKERFILE_DIR))
        name = dockerfile.name
        # Follow a symlinked Dockerfile (stat, not lstat): the frontend needs its bytes.
        _add_regular(
            tar, str(dockerfile), f"{DOCKERFILE_DIR}/{name}", os.stat(dockerfile), ledger, None
        )
        ignore = dockerfile.with_name(name + IGNORE_SUFFIX)
        if ignore.is_file():
            _add_regular(
                tar, str(ignore), f"{DOCKERFILE_DIR}/{name}{IGNORE_SUFFIX}", os.stat(ignore),
                ledger, None,
            )  # fmt: skip
    return Packed(buf.getvalue(), name, counts[0], counts[1], counts[2])


def _add_regular(
    tar: tarfile.TarFile,
    path: str,
    arcname: str,
    st: os.stat_result,
    ledger: MtimeLedger,
    counts: list[int] | None,
) -> None:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        if counts is None:  # the Dockerfile itself: the build cannot go on
            raise
        return
    info = _info(arcname, st)
    info.size = len(data)
    digest = hashlib.blake2b(data, digest_size=16).digest()
    mtime = ledger.mtime_for(arcname, info.size, int(info.mtime), digest)
    if counts is not None:
        counts[0] += 1
        counts[1] += info.size
        counts[2] += mtime != info.mtime
    info.mtime = mtime
    tar.addfile(info, io.BytesIO(data))


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info
