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
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from watcher.buildkit.buildctl import CONTEXT_DIR, DOCKERFILE_DIR

IGNORE_SUFFIX = ".dockerignore"


class Packed(NamedTuple):
    data: bytes
    dockerfile_name: str
    files: int  # regular files and links sent (directories not counted)
    size: int  # bytes of file content sent


def _normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Owners mean nothing on the other side (the sidecar runs as uid 1000 and
    # BuildKit resets them for COPY) and would leak local user names.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack(context: Path, files: Sequence[str], dockerfile: Path) -> Packed:
    """The tar (GNU format: busybox ``tar`` in the sidecar reads its long
    names) of ``files`` (relative POSIX paths under ``context``) and the
    Dockerfile. A file that vanished since the list was made is skipped: the
    change that removed it starts a newer build anyway."""
    buf = io.BytesIO()
    sent = size = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_dir_info(CONTEXT_DIR))
        for rel in files:
            path = context / rel
            try:
                info = tar.gettarinfo(str(path), arcname=f"{CONTEXT_DIR}/{rel}")
            except FileNotFoundError:
                continue
            if info is None:  # a socket or other special file: Docker skips these too
                continue
            _normalize(info)
            if info.isreg():
                try:
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
                except FileNotFoundError:
                    continue
                size += info.size
                sent += 1
            else:
                tar.addfile(info)
                if not info.isdir():
                    sent += 1
        tar.addfile(_dir_info(DOCKERFILE_DIR))
        name = dockerfile.name
        _add_file(tar, dockerfile, f"{DOCKERFILE_DIR}/{name}")
        ignore = dockerfile.with_name(name + IGNORE_SUFFIX)
        if ignore.is_file():
            _add_file(tar, ignore, f"{DOCKERFILE_DIR}/{name}{IGNORE_SUFFIX}")
    return Packed(buf.getvalue(), name, sent, size)


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


def _add_file(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    # Follow a symlinked Dockerfile: the frontend needs its bytes.
    st = os.stat(path)
    info = tarfile.TarInfo(arcname)
    info.size = st.st_size
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    with path.open("rb") as fh:
        tar.addfile(info, fh)
