"""``devreg stop``: end the background watcher (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from hookpkg.project import project_paths
from watcher.cli.results import StopResult
from watcher.daemon.state import StateDir

STOP_TIMEOUT = 15.0


def stop(*, config: Path = Path("devspace.yaml")) -> StopResult:
    state = StateDir(project_paths(config).directory)
    pid = state.read_pid()
    if not state.watcher_running():
        if pid is not None:
            state.pid_path.unlink(missing_ok=True)
        return StopResult("not-running")
    if pid is None:
        return StopResult("no-pid")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    # The lock is released a moment before the process ends: wait for both,
    # so that "stopped" means nothing of the watcher is left.
    while state.watcher_running() or _alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return StopResult("killed", pid, timeout=STOP_TIMEOUT)
        time.sleep(0.02)
    return StopResult("stopped", pid)


def _alive(pid: int) -> bool:
    """Running (a zombie has ended: only its parent's bookkeeping is left)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
