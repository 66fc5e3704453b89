from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from watcher import proc


def test_streams_lines_and_keeps_the_tail() -> None:
    lines: list[str] = []
    done = proc.run(
        ("sh", "-c", "for i in 1 2 3; do echo line$i; done; echo err >&2; exit 3"), log=lines.append
    )
    assert lines == ["line1", "line2", "line3", "err"]
    assert done.returncode == 3 and not done.ok
    assert done.tail[-1] == "err"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("sleep 60 & echo $!; wait", id="polite"),
        pytest.param(
            "trap '' TERM; sleep 60 & echo $!; while true; do wait; done", id="ignores-sigterm"
        ),
    ],
)
def test_cancel_kills_the_whole_process_group(tmp_path: Path, script: str) -> None:
    cancel = threading.Event()
    pids: list[str] = []

    def log(line: str) -> None:
        pids.append(line)
        cancel.set()

    started = time.monotonic()
    done = proc.run(("sh", "-c", script), log=log, cancel=cancel, grace=0.3)
    assert done.cancelled
    assert time.monotonic() - started < 5
    grandchild = int(pids[0])
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(grandchild)


def test_missing_program_raises() -> None:
    with pytest.raises(FileNotFoundError):
        proc.run(("devreg-no-such-program",))


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("sleep 60 & echo $!", id="holds-the-output-open"),
        pytest.param("sleep 60 >/dev/null 2>&1 & echo $!", id="output-elsewhere"),
        pytest.param("trap '' TERM; (trap '' TERM; sleep 60) & echo $!", id="ignores-sigterm"),
    ],
)
def test_end_with_leader_stops_what_the_command_left_behind(script: str) -> None:
    """``--exec`` runs: the run ends with the shell, and nothing it started
    in the background outlives it."""
    lines: list[str] = []
    started = time.monotonic()
    done = proc.run(("sh", "-c", script), log=lines.append, end_with_leader=True, grace=0.3)
    assert done.returncode == 0 and not done.cancelled
    assert time.monotonic() - started < 5
    left = int(lines[0])
    deadline = time.monotonic() + 5  # SIGKILL is delivered asynchronously
    while _running(left) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _running(left)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an ended orphan waits for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_stat_fields_read_past_a_name_with_parentheses_and_spaces(tmp_path: Path) -> None:
    # A command name is the process's own to choose: "a) b (c" must not shift the fields.
    odd = tmp_path / "a) b (c"
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import time; time.sleep(30)"])
    try:
        fields = proc.stat_fields(child.pid)
        assert fields is not None
        assert fields[0] in ("R", "S") and int(fields[1]) == os.getpid()
    finally:
        child.kill()
        child.wait()
    assert proc.stat_fields(child.pid) is None  # reaped: no such process
