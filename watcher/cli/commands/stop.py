"""``devreg stop``: end the background watcher (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from hookpkg.errors import FatalError
from hookpkg.project import project_paths
from watcher import proc
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
    if not _is_our_watcher(state, pid):
        # A pid file is a plain file in the project: a stale or planted one must not
        # make devreg signal a stranger (as root, any process on the machine).
        raise FatalError(
            f"{state.pid_path}: pid {pid} is not the devreg watcher holding this project's "
            f"lock ({state.lock_path}); not signalling it"
        )
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


def _is_our_watcher(state: StateDir, pid: int) -> bool:
    """``pid`` holds the watcher lock of this project and runs devreg's watcher."""
    if pid <= 1 or pid not in state.lock_holders():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    # `python -m watcher watch …` (what --detach starts) or the `devreg watch` script
    words = [a.decode(errors="replace") for a in argv if a]
    return "watch" in words and any(w == "watcher" or w.endswith("devreg") for w in words)


def _alive(pid: int) -> bool:
    """Running (a zombie has ended: only its parent's bookkeeping is left)."""
    fields = proc.stat_fields(pid)
    return fields is not None and fields[0] != "Z"
