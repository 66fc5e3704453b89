"""``devreg stop`` signals only devreg's own watcher of this project: the process
that holds the project's watcher lock and runs ``watcher watch`` (issue 15). A pid
file is a plain file in a working tree; a stale or planted one must never make devreg
signal a stranger (as root, any process on the machine)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookpkg.errors import FatalError
from watcher.cli.commands.stop import stop
from watcher.daemon.state import StateDir

# Holds the project's watcher lock, like a watcher, but is not devreg's watcher.
HOLD = """
import sys
from pathlib import Path
from watcher.daemon.state import StateDir
StateDir(Path(sys.argv[1])).acquire()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "devspace.yaml").write_text("version: v2beta1\n")
    return tmp_path


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process whose pid a planted pid file names."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_planted_pid_with_no_watcher_is_left_alone(
    project: Path, stranger: subprocess.Popen[bytes]
) -> None:
    state = StateDir(project)
    state.ensure()
    state.pid_path.write_text(f"{stranger.pid}\n")
    assert stop(config=project / "devspace.yaml").outcome == "not-running"
    assert stranger.poll() is None


def test_a_planted_pid_beside_a_lock_holder_is_refused(
    project: Path, stranger: subprocess.Popen[bytes]
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(project)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        state = StateDir(project)
        for pid in (stranger.pid, holder.pid):  # a stranger; a lock holder not devreg's
            state.pid_path.write_text(f"{pid}\n")
            with pytest.raises(FatalError, match=f"pid {pid} is not the devreg watcher"):
                stop(config=project / "devspace.yaml")
        assert stranger.poll() is None and holder.poll() is None
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()
