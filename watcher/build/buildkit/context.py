"""Pack a build's inputs into one tar stream for the ``buildkitd`` container.

Layout (what :mod:`hookpkg.buildctl` points ``--local`` at)::

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

Only what changed. The backend keeps one work directory per image in the
buildkitd environment and remembers what it holds (a manifest of path →
type, mode, size, sent mtime, digest). A pack against that manifest carries
only new and changed entries: unpacking 300 unchanged files and removing them
again cost more than the build itself here, and every byte goes through the
API server on the exec transport. A removed path or a changed type (a file
that became a directory) is sent as a full pack into an emptied directory
instead, so tar never has to replace one kind of entry by another.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import os
import stat
import tarfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from hookpkg.buildctl import CONTEXT_DIR, DOCKERFILE_DIR

IGNORE_SUFFIX = ".dockerignore"
# Versions remembered per path: parallel builds may each hold a copy of the
# shared context in buildkitd, so more than the last one can be live.
LEDGER_DEPTH = 8


class Entry(NamedTuple):
    """What the work directory holds at one path."""

    kind: str  # "f" file, "d" directory, "l" symbolic link
    mode: int
    mtime: int  # as sent (see MtimeLedger)
    size: int
    digest: bytes  # a file's content digest, a link's target; b"" for a directory


Manifest = dict[str, Entry]


class Packed(NamedTuple):
    data: bytes
    dockerfile_name: str
    files: int  # regular files and links sent (directories not counted)
    size: int  # bytes of file content sent
    moved_mtimes: int  # files whose mtime the ledger moved (see module doc)
    manifest: Manifest  # what the work directory holds once this is unpacked
    full: bool  # everything (into an emptied directory), not only the changes
    total_files: int  # regular files and links in the build's inputs


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


class _Cached(NamedTuple):
    key: tuple[int, int, int, int]  # size, mtime_ns, inode, mode: the file is unchanged
    digest: bytes


class PackCache:
    """Per-file digests of earlier packs, keyed by ``lstat`` (the content-tag
    cache makes the same assumption): a one-file change re-hashes one file.
    One per backend; used by one build at a time per image, shared by images."""

    def __init__(self) -> None:
        self._digests: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def known(self, path: str, st: os.stat_result) -> bytes | None:
        """The digest of an unchanged file, without reading it."""
        hit = self._digests.get(path)  # one dict read: atomic, no lock needed
        if hit is not None and hit.key == (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode):
            return hit.digest
        return None

    def digest(self, path: str, st: os.stat_result, data: bytes) -> bytes:
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if len(data) == st.st_size:  # else it changed while read: do not remember
            with self._lock:
                self._digests[path] = _Cached(
                    (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode), digest
                )
        return digest


_BLOCK = 512


# Headers repeat from build to build (only changed files get new ones).
@functools.lru_cache(maxsize=1 << 16)
def _header(
    arcname: str, kind: bytes, mode: int, mtime: int, size: int = 0, link: str = ""
) -> bytes:
    # tarfile builds the header (and the GNU long-name blocks for paths over
    # 100 bytes); TarFile.addfile's copying and bookkeeping are not needed.
    info = tarfile.TarInfo(arcname)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.size = size
    info.linkname = link
    # Owners mean nothing on the other side (the sidecar runs as uid 1000 and
    # COPY resets them) and would leak local user names.
    info.uid = info.gid = 0
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def pack(
    context: Path,
    files: Sequence[str],
    dockerfile: Path,
    *,
    ledger: MtimeLedger | None = None,
    cache: PackCache | None = None,
    previous: Manifest | None = None,
) -> Packed:
    """The tar (GNU format: busybox ``tar`` in the sidecar reads its long
    names) of ``files`` (relative POSIX paths under ``context``) and the
    Dockerfile; with ``previous`` (what the work directory holds), only the
    entries that differ, unless something was removed or changed type. A file
    that vanished since the list was made is skipped: the change that removed
    it starts a newer build anyway. Sockets and other special files are
    skipped, as Docker does."""
    manifest, found = _examine(
        _inputs(context, files, dockerfile),
        ledger if ledger is not None else MtimeLedger(),
        cache if cache is not None else PackCache(),
        previous,
    )
    full = previous is None or any(
        arc not in manifest or manifest[arc].kind != entry.kind for arc, entry in previous.items()
    )
    data, (files_sent, size, moved) = _archive(found, manifest, None if full else previous)
    total = sum(f.entry.kind != "d" for f in found)
    return Packed(data, dockerfile.name, files_sent, size, moved, manifest, full, total)


class _Found(NamedTuple):
    arcname: str
    entry: Entry
    data: bytes | None  # None: not read yet (read only when sent)
    path: str
    local_mtime: int  # whole seconds, before the ledger moved it


def _inputs(context: Path, files: Sequence[str], dockerfile: Path) -> list[tuple[str, str, bool]]:
    """``(path, arcname, required)`` of everything that goes into the archive."""
    root = str(context)
    inputs = [(f"{root}/{rel}", f"{CONTEXT_DIR}/{rel}", False) for rel in files]
    name = dockerfile.name
    inputs.append((str(dockerfile), f"{DOCKERFILE_DIR}/{name}", True))
    ignore = dockerfile.with_name(name + IGNORE_SUFFIX)
    if ignore.is_file():
        inputs.append((str(ignore), f"{DOCKERFILE_DIR}/{name}{IGNORE_SUFFIX}", True))
    return inputs


def _examine(
    inputs: list[tuple[str, str, bool]],
    ledger: MtimeLedger,
    cache: PackCache,
    previous: Manifest | None,
) -> tuple[Manifest, list[_Found]]:
    """What each input is now: the manifest the work directory will hold."""
    manifest: Manifest = {}
    found: list[_Found] = []
    for path, arcname, required in inputs:
        try:
            # Follow a symlinked Dockerfile (stat, not lstat): the frontend needs its bytes.
            st = os.stat(path) if required else os.lstat(path)
            item = _entry(path, arcname, st, ledger, cache, previous)
        except FileNotFoundError:
            if required:  # the Dockerfile itself: the build cannot go on
                raise
            continue
        if item is not None:
            manifest[arcname] = item[0]
            found.append(_Found(arcname, item[0], item[1], path, int(st.st_mtime)))
    return manifest, found


def _archive(
    found: list[_Found], manifest: Manifest, unchanged: Manifest | None
) -> tuple[bytes, tuple[int, int, int]]:
    """The tar of what ``found`` holds but ``unchanged`` (``None``: all of
    it), and (files, bytes, moved mtimes) sent. A file that changed since it
    was hashed goes out as it is now, its digest in ``manifest`` cleared."""
    out = [
        _header(CONTEXT_DIR, tarfile.DIRTYPE, 0o755, 0),
        _header(DOCKERFILE_DIR, tarfile.DIRTYPE, 0o755, 0),
    ]
    files = size = moved = 0
    for arcname, entry, data, path, local_mtime in found:
        if unchanged is not None and unchanged.get(arcname) == entry:
            continue
        if entry.kind == "d":
            out.append(_header(arcname, tarfile.DIRTYPE, entry.mode, entry.mtime))
            continue
        files += 1
        if entry.kind == "l":
            link = entry.digest.decode("utf-8", "surrogateescape")
            out.append(_header(arcname, tarfile.SYMTYPE, entry.mode, entry.mtime, link=link))
            continue
        if data is None:
            with open(path, "rb") as fh:
                data = fh.read()
            if hashlib.blake2b(data, digest_size=16).digest() != entry.digest:
                # Changed since it was hashed: the change's own build follows.
                entry = entry._replace(size=len(data), digest=b"")
                manifest[arcname] = entry
        size += len(data)
        moved += entry.mtime != local_mtime
        out.append(_header(arcname, tarfile.REGTYPE, entry.mode, entry.mtime, len(data)))
        out.append(data)
        if len(data) % _BLOCK:
            out.append(b"\0" * (_BLOCK - len(data) % _BLOCK))
    out.append(b"\0" * (2 * _BLOCK))  # the end-of-archive marker
    return b"".join(out), (files, size, moved)


def _entry(
    path: str,
    arcname: str,
    st: os.stat_result,
    ledger: MtimeLedger,
    cache: PackCache,
    previous: Manifest | None,
) -> tuple[Entry, bytes | None] | None:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return Entry("d", mode, int(st.st_mtime), 0, b""), None
    if stat.S_ISLNK(st.st_mode):
        link = os.readlink(path).encode("utf-8", "surrogateescape")
        return Entry("l", mode, int(st.st_mtime), 0, link), None
    if not stat.S_ISREG(st.st_mode):
        return None
    data: bytes | None = None
    digest = cache.known(path, st)
    if digest is not None and previous is not None:
        # Unchanged since it was sent: what the work directory holds stands
        # (the common case, so it skips the ledger).
        held = previous.get(arcname)
        if held is not None and (held.kind, held.mode, held.size, held.digest) == (
            "f",
            mode,
            st.st_size,
            digest,
        ):
            return held, None
    if digest is None:
        with open(path, "rb") as fh:
            data = fh.read()
        digest = cache.digest(path, st, data)
    size = len(data) if data is not None else st.st_size
    mtime = ledger.mtime_for(arcname, size, int(st.st_mtime), digest)
    return Entry("f", mode, mtime, size, digest), data
