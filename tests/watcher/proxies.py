"""A real HTTP forward proxy for tests: Debian's tinyproxy (part ``proxy`` of the
test environment), started on a free loopback port with its own log, which the
test reads to see which requests went through it."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.watcher.registries import free_port

_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/")


@dataclass(frozen=True)
class TinyProxy:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[tuple[str, str]]:
        """(method, target) of every request the proxy received so far:
        ``("CONNECT", "192.0.2.2:6443")``, ``("GET", "http://host:5000/v2/")``."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [(m.group(1), m.group(2)) for m in _REQUEST.finditer(text)]


def local_address() -> str:
    """An IPv4 address of this machine that is not loopback (devreg never sends
    loopback traffic to a proxy, so a test reaches its servers through this one)."""
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    addresses = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    assert addresses, f"no global IPv4 address on this machine:\n{out}"
    return addresses[0]


@contextlib.contextmanager
def running_tinyproxy(binary: str, tmp: Path) -> Iterator[TinyProxy]:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = tmp / "tinyproxy.log"
    config = tmp / "tinyproxy.conf"
    # No Allow and no ConnectPort lines: any client on loopback, CONNECT to any port.
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\n"
        f'LogFile "{log}"\nLogLevel Connect\n'
    )
    proc = subprocess.Popen(
        [binary, "-d", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "tinyproxy.stderr").open("wb"),
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (tmp / "tinyproxy.stderr").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "tinyproxy did not listen within 15 s"
                time.sleep(0.05)
        yield TinyProxy(port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
