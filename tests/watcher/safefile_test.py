"""watcher/safefile.py on its own: devreg's files replaced atomically and never through
a link, and read only when they are regular files of a sane size. (What the state
directory and .devreg.env make of it is in tests/watcher/daemon/state_test.py and
dotenv_test.py.)"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from watcher import safefile
from watcher.safefile import (
    MAX_STATE_FILE,
    append_private,
    read_private,
    read_private_bytes,
    read_tail,
    write_private,
)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("sync", [False, True], ids=["plain", "synced"])
def test_write_private_replaces_the_file(tmp_path: Path, sync: bool) -> None:
    path = tmp_path / "status.json"
    path.write_text("old\n")
    old_inode = path.stat().st_ino
    write_private(path, "new ✓\n", sync=sync)
    assert path.read_text(encoding="utf-8") == "new ✓\n"
    assert path.stat().st_ino != old_inode  # a new file renamed over, never rewritten in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~current_umask()
    assert leftovers(tmp_path) == []


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_private_replaces_a_link_and_leaves_its_target(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("precious\n")
    link = tmp_path / "watch.pid"
    link.symlink_to(target)
    write_private(link, "123\n")
    assert not link.is_symlink() and link.read_text() == "123\n"
    assert target.read_text() == "precious\n"


def test_write_private_through_a_planted_temporary_link_fails_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """The temporary name is created exclusively: a link planted at it is not followed."""
    target = tmp_path / "precious"
    target.write_text("precious\n")
    path = tmp_path / "status.json"
    planted = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    planted.symlink_to(target)
    with pytest.raises(FileExistsError):
        write_private(path, "x")
    assert target.read_text() == "precious\n" and not path.exists()


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Renaming over a directory fails: the old directory stays, the temporary goes."""
    (tmp_path / "status.json").mkdir()
    with pytest.raises(IsADirectoryError):
        write_private(tmp_path / "status.json", "x")
    assert (tmp_path / "status.json").is_dir()
    assert leftovers(tmp_path) == []


def test_read_private_reads_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    path.write_bytes(b'{"state": "running"}\n\xff')
    assert read_private(path) == '{"state": "running"}\n\ufffd'  # bad UTF-8 replaced
    assert read_private_bytes(path) == b'{"state": "running"}\n\xff'


def plant_link_to_target(path: Path, tmp_path: Path) -> None:
    (tmp_path / "target").write_text("secret\n")
    path.symlink_to(tmp_path / "target")


def plant_fifo(path: Path, tmp_path: Path) -> None:
    os.mkfifo(path)  # opened for reading, it would block until a writer came


PLANTS: dict[str, Callable[[Path, Path], None]] = {
    "absent": lambda path, tmp: None,
    "link-to-a-file": plant_link_to_target,
    "link-to-dev-zero": lambda path, tmp: path.symlink_to("/dev/zero"),
    "fifo": plant_fifo,
    "directory": lambda path, tmp: path.mkdir(),
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_what_is_not_a_regular_file_is_never_read(tmp_path: Path, plant: str) -> None:
    path = tmp_path / "watch.pid"
    PLANTS[plant](path, tmp_path)
    assert read_private(path) is None
    assert read_private_bytes(path) is None


def test_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "cache"
    path.write_bytes(b"x" * 10)
    assert read_private_bytes(path, limit=10) == b"x" * 10
    assert read_private_bytes(path, limit=9) is None
    assert safefile.MAX_STATE_FILE == MAX_STATE_FILE == 4 * 1024 * 1024
    path.write_bytes(b"")
    with path.open("r+b") as f:
        f.truncate(MAX_STATE_FILE + 1)  # sparse: a huge file costs no disk
    assert read_private(path) is None


@pytest.mark.parametrize("plant", sorted(set(PLANTS) - {"directory"}))
def test_append_private_appends_to_a_regular_file_of_its_own(tmp_path: Path, plant: str) -> None:
    """watch.log: a link (to a file or /dev/zero) or a FIFO planted there is replaced by
    a file of devreg's own, the link's target untouched; opening never blocks."""
    path = tmp_path / "watch.log"
    PLANTS[plant](path, tmp_path)
    for line in (b"one\n", b"two\n"):
        with os.fdopen(append_private(path), "ab") as log:
            log.write(line)
    assert not path.is_symlink() and stat.S_ISREG(path.lstat().st_mode)
    assert path.read_bytes() == b"one\ntwo\n"
    if plant == "link-to-a-file":
        assert (tmp_path / "target").read_text() == "secret\n"


def test_append_private_keeps_what_is_there_and_refuses_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "watch.log"
    path.write_bytes(b"earlier\n")
    with os.fdopen(append_private(path), "ab") as log:
        log.write(b"later\n")
    assert path.read_bytes() == b"earlier\nlater\n"
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError):
        append_private(tmp_path / "dir")


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_read_tail_reads_only_a_regular_file(tmp_path: Path, plant: str) -> None:
    path = tmp_path / "watch.log"
    PLANTS[plant](path, tmp_path)
    assert read_tail(path) == ""


def test_read_tail_gives_the_end_of_a_long_log(tmp_path: Path) -> None:
    path = tmp_path / "watch.log"
    path.write_bytes(b"x" * 100_000 + b"\nlast line\n")
    tail = read_tail(path, limit=1000)
    assert len(tail) == 1000 and tail.endswith("\nlast line\n")
    assert read_tail(path) == path.read_text()[-64 * 1024 :]
