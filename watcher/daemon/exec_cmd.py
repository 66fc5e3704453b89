"""``--exec CMD`` (SPEC §8): a shell command run after a delivery, with the
new variables in its environment.

``CMD`` is one shell command line, run as ``/bin/sh -c CMD`` from the
project's directory (the config's) once ``.devreg.env`` has been written. Its
environment is devreg's own plus every variable of ``.devreg.env`` (read from
the file, so ``CMD`` sees exactly what a shell that sources it sees), plus
``DEVREG_IMAGES`` (the image keys delivered since the last run, space
separated) and ``DEVREG_ENV_FILE``. It runs through :func:`watcher.proc.run`:
its own process group, its output line by line into the log, and it is
stopped with the group when the watcher stops.

In the watcher, runs happen on a thread of their own, one at a time. A
delivery that arrives while ``CMD`` runs does not cancel it: ``CMD`` is
typically a deploy (``helm upgrade``, ``kubectl apply``), and one killed
half-way can leave the cluster worse off than either version (a Helm release
stuck in ``pending-upgrade`` refuses the next upgrade). The newer deliveries
are gathered into one next run, which starts when the current one ends and
reads the newest ``.devreg.env`` then: skaffold's dev loop and Tilt's
resources behave the same (a change during a deploy waits for it, then one
more deploy). A run is skipped when the variables equal those of the last
successful run (a registry that lost an image and got it pushed again, a
config edit that changes no image): nothing new would be deployed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hookpkg.errors import FatalError
from watcher import proc
from watcher.daemon import dotenv

Log = Callable[[str], None]
IMAGES_VAR = "DEVREG_IMAGES"
ENV_FILE_VAR = "DEVREG_ENV_FILE"
TAIL_LINES = 20  # kept for `devreg status`
SHELL = "/bin/sh"


def check_exec(command: str | None) -> None:
    """``--exec ''`` is a usage error (exit 2)."""
    if command is not None and not command.strip():
        raise FatalError("--exec needs a command, e.g. --exec 'helm upgrade …'", exit_code=2)


def exec_argv(command: str) -> tuple[str, ...]:
    return (SHELL, "-c", command)


def exec_env(
    base: Mapping[str, str],
    variables: Mapping[str, str],
    images: Iterable[str],
    env_file: Path,
) -> dict[str, str]:
    """devreg's environment, then ``.devreg.env``'s variables over it, then
    what only a run has."""
    env = {**base, **variables}
    env[IMAGES_VAR] = " ".join(sorted(set(images)))
    env[ENV_FILE_VAR] = str(env_file)
    return env


@dataclass(frozen=True)
class ExecResult:
    command: str
    images: tuple[str, ...]
    started: float  # time.time()
    seconds: float
    returncode: int | None  # None: it could not be started
    cancelled: bool = False  # devreg was stopped meanwhile
    tail: tuple[str, ...] = ()
    error: str | None = None  # why it could not be started

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.cancelled

    def outcome(self) -> str:
        """``exited 0``, ``exited 3``, ``killed by SIGKILL``, ``stopped with
        devreg``, ``could not start: …``."""
        if self.error is not None:
            return f"could not start: {self.error}"
        if self.cancelled:
            return "stopped with devreg"
        assert self.returncode is not None
        if self.returncode < 0:
            try:
                return f"killed by {signal.Signals(-self.returncode).name}"
            except ValueError:
                return f"killed by signal {-self.returncode}"
        return f"exited {self.returncode}"

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "exit_code": self.returncode,
            "outcome": self.outcome(),
            "cancelled": self.cancelled,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "images": list(self.images),
            "tail": list(self.tail),
            "error": self.error,
        }


@dataclass
class ExecCommand:
    """``CMD`` for one project: :meth:`run` once (``devreg build``), or
    :meth:`start` a thread and :meth:`submit` deliveries (the watcher)."""

    command: str
    directory: Path
    env_file: Path
    log: Log
    on_change: Callable[[], None] = field(default=lambda: None)
    base_env: Mapping[str, str] | None = None  # default: os.environ at each run
    grace: float = proc.DEFAULT_GRACE
    runs: int = 0
    failures: int = 0
    skipped: int = 0
    last: ExecResult | None = None
    _pending: set[str] | None = field(default=None, repr=False)  # None: nothing waits
    _running_since: float | None = field(default=None, repr=False)
    _last_ok_variables: dict[str, str] | None = field(default=None, repr=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    # --- one run -------------------------------------------------------------------

    def run(self, images: Iterable[str], variables: dict[str, str] | None = None) -> ExecResult:
        """Run ``CMD`` now, in this thread, with ``variables`` (default: read from
        ``.devreg.env``), and record the result. Stopped (its whole process group)
        when :meth:`close` is called meanwhile."""
        keys = tuple(sorted(set(images)))
        variables = dotenv.read(self.env_file) if variables is None else variables
        base = os.environ if self.base_env is None else self.base_env
        env = exec_env(base, variables, keys, self.env_file)
        started = time.time()
        with self._cond:
            self._running_since = started
        self.on_change()
        self.log(f"[exec] running `{self.command}` (images: {' '.join(keys) or '-'})")
        try:
            done = proc.run(
                exec_argv(self.command),
                log=lambda line: self.log(f"[exec] {line}"),
                cancel=self._stop,
                env=env,
                cwd=self.directory,
                grace=self.grace,
                tail_lines=TAIL_LINES,
                end_with_leader=True,
            )
            result = ExecResult(
                self.command,
                keys,
                started,
                done.seconds,
                done.returncode,
                cancelled=done.cancelled,
                tail=done.tail,
            )
        except OSError as e:  # no /bin/sh, the directory vanished
            result = ExecResult(
                self.command, keys, started, time.time() - started, None, error=str(e)
            )
        with self._cond:
            self._running_since = None
            self.last = result
            self.runs += 1
            if result.ok:
                self._last_ok_variables = variables
            elif not result.cancelled:
                self.failures += 1
        if result.ok:
            self.log(f"[exec] `{self.command}` {result.outcome()} after {result.seconds:.2f} s")
        elif result.cancelled:
            self.log(f"[exec] `{self.command}` {result.outcome()}")
        else:
            goes_on = "; the watcher goes on" if self._thread is not None else ""
            self.log(
                f"[exec] FAILED: `{self.command}` {result.outcome()} after "
                f"{result.seconds:.2f} s{goes_on}"
            )
        self.on_change()
        return result

    # --- in the watcher ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="devreg-exec", daemon=True)
        self._thread.start()

    def submit(self, images: Iterable[str]) -> None:
        """A round of deliveries is done. Runs ``CMD`` now, or once the
        current run has ended (gathered with any other waiting round)."""
        with self._cond:
            self._pending = (self._pending or set()) | set(images)
            self._cond.notify()
        self.on_change()

    def close(self) -> None:
        """Stop a running ``CMD`` (its whole process group) and the thread."""
        self._stop.set()
        with self._cond:
            self._pending = None
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                images, self._pending = self._pending or set(), None
                variables = dotenv.read(self.env_file)
                unchanged = variables == self._last_ok_variables
                if unchanged:
                    self.skipped += 1
            if unchanged:
                self.log(
                    f"[exec] variables unchanged since the last successful run; "
                    f"not running `{self.command}`"
                )
                self.on_change()
                continue
            if self._stop.is_set():  # closed meanwhile: do not start what would be killed
                return
            self.run(images, variables)

    def status(self) -> dict[str, Any]:
        """For ``devreg status``: ``state`` is ``idle`` (not run yet),
        ``running``, ``ok``, ``failed`` or ``stopped``."""
        with self._cond:
            last = self.last
            if self._running_since is not None:
                state = "running"
            elif last is None:
                state = "idle"
            elif last.cancelled:
                state = "stopped"
            else:
                state = "ok" if last.ok else "failed"
            return {
                "command": self.command,
                "state": state,
                "running_since": self._running_since,
                "pending": self._pending is not None,
                "runs": self.runs,
                "failures": self.failures,
                "skipped": self.skipped,
                "last": last.as_json() if last is not None else None,
            }
