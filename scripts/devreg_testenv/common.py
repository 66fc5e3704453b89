"""What every part uses: logging, PartError, running and waiting, the state file, ports,
processes, locks, Debian packages; the versions and the state and cache locations."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------
# Versions and locations

K8S_VERSION = os.environ.get("DEVREG_TESTENV_K8S_VERSION", "v1.34.4")
ETCD_VERSION = os.environ.get("DEVREG_TESTENV_ETCD_VERSION", "v3.6.4")
KWOK_VERSION = os.environ.get("DEVREG_TESTENV_KWOK_VERSION", "v0.7.0")

STATE = Path(os.environ.get("DEVREG_TESTENV_DIR", "/tmp/devreg-testenv")).absolute()
CACHE = Path(
    os.environ.get("DEVREG_TESTENV_CACHE", Path.home() / ".cache" / "devreg-testenv")
).absolute()

# The entry point: the provisioner loop is started as `scripts/testenv _provisioner`.
LAUNCHER = Path(__file__).resolve().parent.parent / "testenv"


@contextlib.contextmanager
def locked(path: Path, what: str) -> Any:
    """An exclusive lock (flock) on ``path``, so two `up`s or builds do not interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another {what} ({path})")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def log(msg: str) -> None:
    print(f"testenv: {msg}", file=sys.stderr, flush=True)


class PartError(Exception):
    """A part could not be brought up: names the part, the command and its last output."""

    def __init__(
        self,
        part: str,
        message: str,
        command: Sequence[str] | None = None,
        output: str = "",
        log_path: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.part = part
        self.message = message
        self.command = list(command) if command else None
        self.output = output
        self.log_path = log_path

    def render(self) -> str:
        lines = [f"testenv: part '{self.part}' failed: {self.message}"]
        if self.command:
            lines.append(f"  command: {shlex.join(self.command)}")
        tail = last_lines(self.output)
        if tail:
            where = f" ({self.log_path})" if self.log_path else ""
            lines.append(f"  last lines of output{where}:")
            lines.extend(f"    {line}" for line in tail)
        return "\n".join(lines)


def last_lines(text: str, n: int = 25) -> list[str]:
    return [line for line in text.rstrip().splitlines()][-n:]


def tail_file(path: Path, n: int = 25) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    # Logs are appended to: keep only the output of the last command (after its header).
    start = max(data.rfind("\n==== "), data.rfind("\n$ "))
    if start >= 0:
        data = data[start + 1 :].split("\n", 1)[1] if "\n" in data[start + 1 :] else ""
    return "\n".join(last_lines(data, n))


def run(
    part: str,
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
    timeout: float | None = None,
    check: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; on failure raise PartError with its last lines."""
    full_env = {**os.environ, **(env or {})}
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as logf:
            logf.write(f"\n$ {shlex.join(cmd)}\n")
            logf.flush()
            try:
                proc = subprocess.run(
                    cmd,
                    env=full_env,
                    cwd=cwd,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    text=True,
                    input=input_text,
                    stdin=None if input_text is not None else subprocess.DEVNULL,
                )
            except FileNotFoundError as e:
                raise PartError(part, f"tool not found: {e.filename}", cmd) from None
            except subprocess.TimeoutExpired:
                raise PartError(
                    part, f"timed out after {timeout:.0f}s", cmd, tail_file(log_path), log_path
                ) from None
        result = subprocess.CompletedProcess(cmd, proc.returncode, "", "")
        if check and proc.returncode != 0:
            raise PartError(
                part, f"exit status {proc.returncode}", cmd, tail_file(log_path), log_path
            )
        return result
    try:
        proc = subprocess.run(
            cmd,
            env=full_env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as e:
        raise PartError(part, f"tool not found: {e.filename}", cmd) from None
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise PartError(part, f"timed out after {timeout:.0f}s", cmd, str(out)) from None
    if check and proc.returncode != 0:
        raise PartError(
            part, f"exit status {proc.returncode}", cmd, (proc.stdout or "") + (proc.stderr or "")
        )
    return proc


def wait_for(
    part: str,
    what: str,
    cond: Callable[[], bool],
    timeout: float,
    alive: Callable[[], bool] | None = None,
    command: Sequence[str] | None = None,
    log_path: Path | None = None,
    interval: float = 0.2,
) -> None:
    """Poll ``cond`` until true; fail at the deadline or as soon as the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except Exception:  # noqa: BLE001 - any error means "not yet"
            pass
        if alive is not None and not alive():
            raise PartError(
                part,
                f"the process exited while waiting for {what}",
                command,
                tail_file(log_path) if log_path else "",
                log_path,
            )
        if time.monotonic() > deadline:
            raise PartError(
                part,
                f"{what}: not reached within {timeout:.0f}s",
                command,
                tail_file(log_path) if log_path else "",
                log_path,
            )
        time.sleep(interval)


# ---------------------------------------------------------------------------------------
# Parts


@dataclasses.dataclass(frozen=True)
class Part:
    """One part of the environment, as the command line drives it (an entry of cli.PARTS)."""

    up: Callable[[dict[str, Any]], None]
    """Bring it up: start what does not answer, leave what runs (idempotent)."""
    problems: Callable[[dict[str, Any]], list[str]]
    """Why it is not running (empty when it is), for `env` and `status`."""
    exports: Callable[[dict[str, Any]], list[tuple[str, str]]]
    """Its `export NAME=value` pairs, once it is up."""
    processes: tuple[str, ...] = ()
    """The processes it starts, in start order (`down` stops them in reverse)."""
    needs: tuple[str, ...] = ()
    """Parts that `up` brings up with it; they come before it in cli.PARTS."""
    down: Callable[[dict[str, Any]], None] | None = None
    """What `down` must undo besides stopping the processes (before they stop)."""
    memory: Callable[[dict[str, Any]], list[tuple[str, list[int]]]] | None = None
    """For `status`: groups of processes it runs that are not its processes' children."""


# ---------------------------------------------------------------------------------------
# State: ports and processes


def state_file() -> Path:
    return STATE / "state.json"


def load_state() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(state_file().read_text())
    except (OSError, ValueError):
        data = {}
    data.setdefault("ports", {})
    data.setdefault("procs", {})
    data.setdefault("parts", [])
    data.setdefault("owned_dockerd", False)
    return data


def save_state(data: dict[str, Any]) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    tmp = state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(state_file())


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_free_port(taken: set[int]) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port
    raise RuntimeError("no free loopback port")


def port_for(
    state: dict[str, Any], name: str, env_var: str | None = None, running: bool = False
) -> int:
    """The stable port for ``name``: from the environment, else stored, else a free one.

    A port given in the environment is used as is (a clash then fails the part, by name).
    A stored port that something else took since is replaced by a free one.
    """
    ports: dict[str, int] = state["ports"]
    if env_var and os.environ.get(env_var):
        ports[name] = int(os.environ[env_var])
        return ports[name]
    port = ports.get(name)
    if port is not None and (running or port_free(port)):
        return int(port)
    if port is not None:
        log(f"{name}: stored port {port} is taken by another process; choosing a new one")
    ports[name] = pick_free_port(set(ports.values()))
    return ports[name]


def proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 3 (after the parenthesised comm) is the state; a zombie is not running.
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def proc_alive(state: dict[str, Any], name: str) -> bool:
    rec = state["procs"].get(name)
    if not rec:
        return False
    cmd = proc_cmdline(int(rec["pid"]))
    if not cmd:
        return False
    return bool(cmd[: len(rec["match"])] == rec["match"])


def start_process(
    state: dict[str, Any],
    name: str,
    argv: list[str],
    env: dict[str, str] | None = None,
    match: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running process detached, logging to the state dir; record its pid."""
    log_path = STATE / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if not Path(argv[0]).exists() and shutil.which(argv[0]) is None:
        raise PartError(name, f"tool not found: {argv[0]}", argv)
    with log_path.open("a") as logf:
        logf.write(f"\n==== {datetime.datetime.now().isoformat()} $ {shlex.join(argv)}\n")
        logf.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            close_fds=True,
            cwd=STATE,
        )
    state["procs"][name] = {
        "pid": proc.pid,
        "match": match or argv[:1],
        "argv": argv,
        "log": str(log_path),
    }
    save_state(state)
    return proc


def stop_process(state: dict[str, Any], name: str, timeout: float = 20.0) -> None:
    rec = state["procs"].get(name)
    if not rec:
        return
    pid = int(rec["pid"])
    if proc_alive(state, name):
        log(f"stopping {name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc_cmdline(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc_cmdline(pid) is not None:
            log(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while proc_cmdline(pid) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
    del state["procs"][name]
    save_state(state)


def process_gone(
    state: dict[str, Any], name: str, proc: subprocess.Popen[bytes] | None
) -> Callable[[], bool]:
    def alive() -> bool:
        if proc is not None:
            return proc.poll() is None
        return proc_alive(state, name)

    return alive


# ---------------------------------------------------------------------------------------
# Debian packages

_apt_updated = False


def apt_install(part: str, packages: Sequence[str]) -> None:
    global _apt_updated
    missing = [p for p in packages if not dpkg_installed(p)]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise PartError(
            part,
            f"Debian packages {', '.join(missing)} are missing and apt-get "
            "is not there to install them",
            ["apt-get", "install", *missing],
        )
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    apt_log = STATE / "logs" / "apt.log"
    if not _apt_updated:
        log("apt-get update")
        run(part, ["apt-get", "update"], env=env, log_path=apt_log, timeout=600)
        _apt_updated = True
    log(f"apt-get install {' '.join(missing)}")
    run(
        part,
        ["apt-get", "install", "-y", "--no-install-recommends", *missing],
        env=env,
        log_path=apt_log,
        timeout=1200,
    )


def dpkg_installed(package: str) -> bool:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except FileNotFoundError:
        return False
    return "install ok installed" in out


# ---------------------------------------------------------------------------------------
# HTTP probes


def http_status(url: str, context: ssl.SSLContext | None = None, timeout: float = 3) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def http_status_safe(url: str) -> int:
    try:
        return http_status(url)
    except (urllib.error.URLError, OSError):
        return 0
