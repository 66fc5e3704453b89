"""devreg's state directory: one watcher per project (a real ``flock`` held by
another process), the pid file, status and deliveries written atomically and
serialised across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookpkg.errors import FatalError
from watcher.daemon.state import StateDir

REPO = Path(__file__).resolve().parents[3]
HOLD = """
import sys
from pathlib import Path
from watcher.daemon.state import StateDir
state = StateDir(Path(sys.argv[1]))
state.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""
RECORD = """
import sys
from pathlib import Path
from watcher.daemon.state import StateDir
state = StateDir(Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.read()  # both start recording when the test closes their stdin
for i in range(int(sys.argv[3])):
    state.record_delivered(f"{sys.argv[2]}-{i}", {"tag": str(i)})
"""


def _python(script: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the project's watcher lock until its stdin closes."""
    child = _python(HOLD, str(tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    yield child
    assert child.stdin is not None
    child.stdin.close()
    child.wait(timeout=10)
    child.stdout.close()


def test_a_second_watcher_is_refused_with_the_first_ones_pid(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    state = StateDir(tmp_path)
    assert state.watcher_running()
    assert state.read_pid() == holder.pid
    with pytest.raises(
        FatalError, match=rf"another devreg watcher \(pid {holder.pid}\) is running"
    ):
        state.acquire()
    assert state.watcher_running()  # asking did not take the lock away


def test_the_lock_goes_with_its_process(tmp_path: Path) -> None:
    child = _python(HOLD, str(tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    child.kill()  # no release: the kernel drops the flock with the process
    child.wait(timeout=10)
    child.stdout.close()
    assert child.stdin is not None
    child.stdin.close()
    state = StateDir(tmp_path)
    assert not state.watcher_running()
    assert state.read_pid() == child.pid  # a stale pid file ...
    state.acquire()  # ... does not stop a new watcher
    try:
        assert state.read_pid() == os.getpid()
    finally:
        state.release()
    assert not state.pid_path.exists()
    assert not state.watcher_running()


def test_release_leaves_another_watchers_pid_file(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.acquire()
    other = os.getppid()  # a newer watcher's, say
    state.pid_path.write_text(f"{other}\n")
    state.release()
    assert state.read_pid() == other
    state.release()  # twice is harmless


def test_no_state_yet(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    assert not state.watcher_running()
    assert state.read_pid() is None
    assert state.read_status() is None
    assert state.read_delivered() == {}
    assert not state.root.exists()  # reading creates nothing


def test_the_state_stays_out_of_the_users_commits(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "devspace.yaml").write_text("version: v2beta1\n")
    state = StateDir(tmp_path)
    state.ensure()
    state.write_status({"state": "running"})
    porcelain = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert porcelain.splitlines() == ["?? devspace.yaml"]
    assert not (tmp_path / ".gitignore").exists()  # the user's own is not touched


def test_status_round_trip(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.write_status({"state": "running", "images": {"app": {"tag": "abc"}}})
    status = state.read_status()
    assert status is not None
    assert status["images"] == {"app": {"tag": "abc"}}
    assert isinstance(status["updated"], float)
    assert [p.name for p in state.root.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("content", "status", "delivered"),
    [
        pytest.param("", None, {}, id="empty"),
        pytest.param("{not json", None, {}, id="garbage"),
        pytest.param("[1, 2]", None, {}, id="not-an-object"),
        pytest.param(
            '{"app": {"tag": "t"}, "bad": "x"}',
            {"app": {"tag": "t"}, "bad": "x"},
            {"app": {"tag": "t"}},
            id="entries-of-the-wrong-shape",
        ),
    ],
)
def test_damaged_files_read_as_nothing(
    tmp_path: Path, content: str, status: object, delivered: dict[str, dict[str, str]]
) -> None:
    state = StateDir(tmp_path)
    state.ensure()
    state.status_path.write_text(content)
    state.delivered_path.write_text(content)
    assert state.read_status() == status
    assert state.read_delivered() == delivered


def test_deliveries_from_two_processes_are_all_kept(tmp_path: Path) -> None:
    """``devreg build`` may record beside a running watcher: every
    read-modify-write is serialised, so no record is lost."""
    names = ("watch", "build")
    children = [
        _python(RECORD, str(tmp_path), name, "100", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for name in names
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.close()
    for child in children:
        assert child.wait(timeout=60) == 0
        assert child.stdout is not None
        child.stdout.close()
    delivered = StateDir(tmp_path).read_delivered()
    assert sorted(delivered) == sorted(f"{n}-{i}" for n in names for i in range(100))
    assert json.loads(StateDir(tmp_path).delivered_path.read_text()) == delivered


def test_record_delivered_returns_every_image(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    assert state.record_delivered("api", {"tag": "1"}) == {"api": {"tag": "1"}}
    assert state.record_delivered("web", {"tag": "2"}) == {
        "api": {"tag": "1"},
        "web": {"tag": "2"},
    }
    assert state.record_delivered("api", {"tag": "3"})["api"] == {"tag": "3"}


# --- a hostile working tree: links, FIFOs, devices, odd pids (issue 15) ---------------


def test_a_state_dir_that_is_a_link_is_refused_and_nothing_written_through_it(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / ".devreg").symlink_to(outside)
    state = StateDir(project)
    with pytest.raises(FatalError, match="is a symbolic link"):
        state.acquire()
    with pytest.raises(FatalError, match="is a symbolic link"):
        state.record_delivered("app", {"tag": "x"})
    assert list(outside.iterdir()) == []


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".devreg").write_text("not a directory\n")
    with pytest.raises(FatalError, match="is not a directory"):
        StateDir(tmp_path).ensure()


def test_a_planted_pid_link_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / ".devreg").mkdir()
    (tmp_path / ".devreg" / "watch.pid").symlink_to(victim)
    state = StateDir(tmp_path)
    state.acquire()
    try:
        assert victim.read_text() == "precious\n"
        assert not state.pid_path.is_symlink()
        assert state.read_pid() == os.getpid()
    finally:
        state.release()


@pytest.mark.parametrize(
    "content", ["0\n", "-1\n", "1\n", "abc\n", "", "99999999999999999999\n"], ids=repr
)
def test_a_pid_file_of_the_wrong_shape_names_no_process(tmp_path: Path, content: str) -> None:
    state = StateDir(tmp_path)
    state.ensure()
    state.pid_path.write_text(content)
    pid = state.read_pid()
    assert pid is None or pid > 1 and content.strip() == "99999999999999999999"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_state_files_that_are_not_regular_files_are_never_read(tmp_path: Path, kind: str) -> None:
    """A FIFO would block a reader forever and /dev/zero would fill memory: both are
    refused by their type, before any read."""
    state = StateDir(tmp_path)
    state.ensure()
    for path in (state.pid_path, state.status_path, state.delivered_path):
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "dev-zero":
            path.symlink_to("/dev/zero")
        else:
            path.mkdir()
    assert state.read_pid() is None
    assert state.read_status() is None
    assert state.read_delivered() == {}


def test_lock_holders_name_the_process_that_holds_the_lock(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    assert StateDir(tmp_path).lock_holders() == {holder.pid}
