"""Only regular files are read, within the size limits; nothing ever blocks."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from hookpkg import bounds
from hookpkg.bounds import Limits, ReadBudget, Unreadable, parse_size, read_regular


def finishes(fn: Callable[[], object], seconds: float = 10) -> object:
    """Run ``fn`` on a thread; fail (instead of hanging the suite) if it blocks."""
    box: list[object] = []

    def target() -> None:
        try:
            box.append(fn())
        except Exception as e:  # the test looks at what was raised
            box.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "blocked"
    return box[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.yaml"
    os.mkfifo(path)
    return path


def test_fifo_is_refused_without_opening_it(fifo: Path) -> None:
    e = finishes(lambda: read_regular(fifo, limit=1 << 20))
    assert isinstance(e, Unreadable)
    assert str(e) == "is a FIFO (named pipe), not a regular file"


def test_fifo_swapped_in_after_the_stat_is_caught_by_fstat(
    fifo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    regular = tmp_path / "regular.yaml"
    regular.write_text("a: 1\n")
    real_stat = os.stat
    monkeypatch.setattr(bounds.os, "stat", lambda p, *a, **k: real_stat(regular))
    e = finishes(lambda: read_regular(fifo, limit=1 << 20))
    assert isinstance(e, Unreadable)
    assert "FIFO" in str(e)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/dev/zero", "a character device"),
        ("/dev/urandom", "a character device"),
        ("/", "a directory"),
    ],
)
def test_devices_and_directories_are_refused(path: str, kind: str) -> None:
    e = finishes(lambda: read_regular(Path(path), limit=1 << 20))
    assert isinstance(e, Unreadable)
    assert str(e) == f"is {kind}, not a regular file"


def test_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    e = finishes(lambda: read_regular(tmp_path / "zero.yaml", limit=1 << 20))
    assert isinstance(e, Unreadable)
    assert "character device" in str(e)


def test_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(Unreadable, match="a socket"):
            read_regular(path, limit=1 << 20)


def test_symlinked_regular_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "real.yaml").write_text("a: 1\n")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "real.yaml")
    assert read_regular(tmp_path / "link.yaml", limit=100) == ("a: 1\n", 5)


def test_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a" * 101)
    with pytest.raises(Unreadable) as e:
        read_regular(path, limit=100, what="the file")
    assert str(e.value) == (
        "the file is 101 bytes, larger than the 100 bytes limit; set DEVREG_MAX_FILE_SIZE "
        "(for example DEVREG_MAX_FILE_SIZE=8M) to check it anyway"
    )
    assert read_regular(path, limit=101)[1] == 101


def test_budget_across_files(tmp_path: Path) -> None:
    for name in "abc":
        (tmp_path / name).write_text("x" * 400)
    budget = ReadBudget(Limits(max_file_size=500))
    budget.remaining = 1000
    budget.read(tmp_path / "a")
    budget.read(tmp_path / "b")
    with pytest.raises(Unreadable, match="more than the 200 bytes left of the limit on all files"):
        budget.read(tmp_path / "c")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1 << 20),
        ("512K", 512 << 10),
        ("4M", 4 << 20),
        ("4MiB", 4 << 20),
        ("1g", 1 << 30),
        ("8 MB", 8 << 20),
        ("100B", 100),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "0", "-1", "4T", "1.5M", "\u0664M", "4M\n4"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_limits_from_env() -> None:
    assert Limits.from_env({}).max_file_size == bounds.DEFAULT_MAX_FILE_SIZE
    assert Limits.from_env({"DEVREG_MAX_FILE_SIZE": "8M"}).max_file_size == 8 << 20
    with pytest.raises(ValueError, match="DEVREG_MAX_FILE_SIZE='lots' is not a size"):
        Limits.from_env({"DEVREG_MAX_FILE_SIZE": "lots"})


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "l1.yaml").write_bytes(b"a: \xff\n")
    with pytest.raises(Unreadable, match="not UTF-8 text"):
        read_regular(tmp_path / "l1.yaml", limit=100)
