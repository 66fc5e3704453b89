"""The one subprocess wrapper of the watcher (and the in-cluster backend).

Commands are tuples built by small pure functions elsewhere (so tests can read
them); this module only runs them. Every child gets its own process group
(``start_new_session``) so that stopping it reaches its own children too, and
so that a ``^C`` in the terminal reaches devreg alone: devreg decides when a
build dies, through ``cancel`` or its own shutdown. Stopping escalates from
SIGTERM to SIGKILL after a grace period (watchdog's tricks do the same).
"""

from __future__ import annotations

import collections
import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, NamedTuple

from watcher import console

DEFAULT_GRACE = 2.0
TAIL_LINES = 40
# How often a running command looks at its cancel event. Cancellation is the
# only thing polled: a command's end is seen at once (its output closes).
_CANCEL_POLL = 0.02


class Completed(NamedTuple):
    argv: tuple[str, ...]
    returncode: int
    tail: tuple[str, ...]  # the last output lines (for error reports)
    cancelled: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.cancelled


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no straggler of its group survives.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


def stat_fields(pid: int | str) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (``state``, ``ppid``, ``pgrp``, …),
    or None when there is no such process. The name is cut at its last ``)``: it may
    hold spaces and parentheses of its own."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _group_runs(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. An ended one stays a
    zombie until init reaps it (its parent, the leader, is gone), and
    ``killpg(pgid, 0)`` still finds zombies; so ``/proc`` is asked then."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for entry in os.listdir("/proc"):
        fields = stat_fields(entry) if entry.isdigit() else None
        if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _end_group(pgid: int, grace: float) -> None:
    """SIGTERM what is left of a process group whose leader has exited, then
    SIGKILL whatever has not ended within ``grace``."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return  # nothing left
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _group_runs(pgid):
            return
        time.sleep(_CANCEL_POLL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run(
    argv: Sequence[str],
    *,
    log: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    grace: float = DEFAULT_GRACE,
    tail_lines: int = TAIL_LINES,
    end_with_leader: bool = False,
) -> Completed:
    """Run ``argv``, streaming its merged stdout/stderr line by line to ``log``.

    When ``cancel`` is set the child's process group is stopped and the result
    says ``cancelled``. With ``end_with_leader`` the run ends when ``argv``'s
    own process exits: what it left running in its process group (``cmd &``)
    is stopped then, so that nothing outlives the run and a background
    process holding the output open cannot keep it going. Never raises for a
    failing command (the caller decides what a non-zero code means); raises
    ``FileNotFoundError`` when the program does not exist.
    """
    argv = tuple(argv)
    console.detail(f"$ {shlex.join(argv)}" + (f"  (in {cwd})" if cwd else ""))
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    guard = _GroupGuard(proc, cancel=cancel, end_with_leader=end_with_leader, grace=grace)
    try:
        if stdin is not None:
            _feed(proc.stdin, stdin)
        tail = _stream_output(proc, log, tail_lines)
        returncode = proc.wait()
    except BaseException:
        # Our own thread is being interrupted (KeyboardInterrupt, a bug in
        # ``log``): never leave the child behind.
        _kill_group(proc, grace)
        raise
    finally:
        guard.stop()
        if proc.stdout is not None:
            proc.stdout.close()
    return Completed(argv, returncode, tail, guard.cancelled.is_set(), time.monotonic() - started)


def _stream_output(
    proc: subprocess.Popen[bytes], log: Callable[[str], None] | None, tail_lines: int
) -> tuple[str, ...]:
    """Hand each output line to ``log`` until the output closes; the last ``tail_lines``."""
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        tail.append(line)
        if log is not None:
            log(line)
    return tuple(tail)


class _GroupGuard:
    """The helper threads of one run: one stops the process group when
    ``cancel`` is set, one when the leader exits (``end_with_leader``)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        *,
        cancel: threading.Event | None,
        end_with_leader: bool,
        grace: float,
    ) -> None:
        self._proc = proc
        self._cancel = cancel
        self._grace = grace
        self._finished = threading.Event()
        self.cancelled = threading.Event()
        self._threads: list[threading.Thread] = []
        if cancel is not None:
            self._threads.append(
                threading.Thread(
                    target=self._watch_cancel, name=f"proc-cancel-{proc.pid}", daemon=True
                )
            )
        if end_with_leader:
            self._threads.append(
                threading.Thread(
                    target=self._watch_leader, name=f"proc-leader-{proc.pid}", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def _watch_cancel(self) -> None:
        # Waits on ``finished`` and polls ``cancel``, so that ``stop`` returns
        # at once when the command ends (waiting on ``cancel`` instead cost
        # every command up to one poll interval).
        assert self._cancel is not None
        while not self._finished.wait(_CANCEL_POLL):
            if self._cancel.is_set():
                self.cancelled.set()
                _kill_group(self._proc, self._grace)
                return

    def _watch_leader(self) -> None:
        # Only the leader is waited for; the output may stay open as long as
        # anything of its group runs.
        self._proc.wait()
        _end_group(self._proc.pid, self._grace)

    def stop(self) -> None:
        """The run is over: end and join the helper threads."""
        self._finished.set()
        for thread in self._threads:
            thread.join()


def _feed(pipe: IO[bytes] | None, data: bytes) -> None:
    assert pipe is not None
    with contextlib.suppress(BrokenPipeError):
        pipe.write(data)
    with contextlib.suppress(BrokenPipeError):
        pipe.close()
