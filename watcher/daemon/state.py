"""devreg's state under ``<config dir>/.devreg/``: the watcher's lock, pid
file, log and status, the last good delivery per image, the content-tag
cache. Small JSON files, each replaced atomically."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from hookpkg.errors import FatalError
from hookpkg.project import STATE_DIR
from watcher.safefile import read_private, write_private


def _write_json(path: Path, data: Any) -> None:
    write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _read_json(path: Path) -> Any:
    text = read_private(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
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
        """Make ``.devreg`` or check the one there: a directory of this user, not a
        link (a cloned repository can plant ``.devreg -> /somewhere``; devreg would
        then write outside the project)."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.root, 0o755)
        self.check()
        # Keep the state out of the user's commits without touching their
        # .gitignore.
        ignore = self.root / ".gitignore"
        if not os.path.lexists(ignore):
            write_private(ignore, "*\n")

    def check(self) -> None:
        """Refuse a state directory that is not devreg's to trust."""
        try:
            info = os.lstat(self.root)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode):
            raise FatalError(
                f"{self.root}: is a symbolic link; devreg keeps its state only in a "
                "directory of the project (remove the link)"
            )
        if not stat.S_ISDIR(info.st_mode):
            raise FatalError(f"{self.root}: is not a directory (remove it)")
        if info.st_uid != os.getuid():
            raise FatalError(
                f"{self.root}: belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
            )

    # --- one watcher per project ------------------------------------------

    def acquire(self) -> None:
        """Take the watcher lock (held until :meth:`release` or exit) and
        write the pid file."""
        self.ensure()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
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
        write_private(self.pid_path, f"{os.getpid()}\n")

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
            fd = os.open(self.lock_path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # missing, or a link: no watcher of ours holds it
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def read_pid(self) -> int | None:
        """The pid file's pid: None unless it is a regular file holding a pid > 1."""
        text = read_private(self.pid_path)
        try:
            pid = int((text or "").strip())
        except ValueError:
            return None
        return pid if pid > 1 else None

    def lock_holders(self) -> set[int]:
        """The pids holding the watcher lock (from /proc/locks, by the lock file's
        inode): only such a process is devreg's watcher of this project."""
        try:
            info = os.stat(self.lock_path, follow_symlinks=False)
            locks = Path("/proc/locks").read_text()
        except OSError:
            return set()
        want = f":{info.st_ino}"
        holders = set()
        for line in locks.splitlines():
            fields = line.split()
            # 1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(want):
                major, minor, _ = fields[5].split(":")
                if (int(major, 16), int(minor, 16)) == (
                    os.major(info.st_dev),
                    os.minor(info.st_dev),
                ):
                    holders.add(int(fields[4]))
        return holders

    # --- status and deliveries --------------------------------------------

    def write_status(self, status: dict[str, Any]) -> None:
        with self._mutex:
            self.ensure()
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


def trusted_state_dir(config_dir: Path) -> Path | None:
    """``<config_dir>/.devreg``, made if missing, for a cache that may be skipped;
    None when it is not devreg's to trust (a link, a file: :meth:`StateDir.check`)."""
    state = StateDir(config_dir)
    try:
        state.ensure()
    except (FatalError, OSError):
        return None
    return state.root
