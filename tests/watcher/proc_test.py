from __future__ import annotations

import os
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
