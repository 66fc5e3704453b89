"""devreg's state under ``<config dir>/.devreg/``: the watcher's lock, pid
file, log and status, the last good delivery per image, the content-tag
cache. Small JSON files, each replaced atomically."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from hookpkg.errors import FatalError
from hookpkg.project import STATE_DIR


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class StateDir:
    def __init__(self, config_dir: Path) -> None:
        self.root = config_dir / STATE_DIR
        self.lock_path = self.root / "watch.lock"
        self.pid_path = self.root / "watch.pid"
        self.log_path = self.root / "watch.log"
        self.status_path = self.root / "status.json"
        self.delivered_path = self.root / "delivered.json"
        self.cache_path = self.root / "contenttag-cache.marshal"
        self._lock_fd: int | None = None
        self._mutex = threading.Lock()

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Keep the state out of the user's commits without touching their
        # .gitignore.
        ignore = self.root / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n", encoding="utf-8")

    # --- one watcher per project ------------------------------------------

    def acquire(self) -> None:
        """Take the watcher lock (held until :meth:`release` or exit) and
        write the pid file."""
        self.ensure()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = self.read_pid()
            who = f" (pid {pid})" if pid else ""
            raise FatalError(
                f"another devreg watcher{who} is running for this project; "
                "`devreg stop` ends it, `devreg status` shows it"
            ) from None
        self._lock_fd = fd
        self.pid_path.write_text(f"{os.getpid()}\n", encoding="utf-8")

    def release(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if self.read_pid() == os.getpid():
                self.pid_path.unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

    def watcher_running(self) -> bool:
        """Whether some process holds the lock (asked without taking it for long)."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def read_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    # --- status and deliveries --------------------------------------------

    def write_status(self, status: dict[str, Any]) -> None:
        with self._mutex:
            _write_json(self.status_path, {**status, "updated": time.time()})

    def read_status(self) -> dict[str, Any] | None:
        data = _read_json(self.status_path)
        return data if isinstance(data, dict) else None

    def read_delivered(self) -> dict[str, dict[str, str]]:
        data = _read_json(self.delivered_path)
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)}

    def record_delivered(self, key: str, record: dict[str, str]) -> dict[str, dict[str, str]]:
        """Store ``key``'s last good delivery; returns all of them."""
        with self._mutex:
            self.ensure()
            lock_fd = os.open(
                self.root / "delivered.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
            try:
                # ``devreg build`` may run beside a watcher: serialise the
                # read-modify-write across processes.
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                current = self.read_delivered()
                current[key] = record
                _write_json(self.delivered_path, current)
            finally:
                os.close(lock_fd)
            return current
