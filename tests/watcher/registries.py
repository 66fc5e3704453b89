"""Real distribution registries for tests: Debian's ``docker-registry`` as a
process on a loopback port, with no auth, htpasswd or token auth."""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REGISTRY_BIN = os.environ.get("DEVREG_TEST_REGISTRY_BIN", "/usr/bin/docker-registry")


def registry_bin() -> str:
    if not os.access(REGISTRY_BIN, os.X_OK):
        msg = f"{REGISTRY_BIN} is missing (apt-get install docker-registry)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return REGISTRY_BIN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash (what the registry's htpasswd wants), from the system's
    libxcrypt: no extra package needed."""
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2y$", 5, None, 0)
    hashed = lib.crypt(password.encode(), salt)
    assert hashed and hashed.startswith(b"$2"), "libcrypt has no bcrypt"
    return str(hashed.decode())


def wait_answering(host: str, port: int, *, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        conn = http.client.HTTPConnection(host, port, timeout=1)
        try:
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            conn.close()


@contextlib.contextmanager
def running_registry(
    tmp: Path,
    *,
    users: dict[str, str] | None = None,
    auth_yaml: str | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """Yield ``127.0.0.1:<port>`` of a plain-HTTP registry (stopped on exit)."""
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    auth = ""
    if users:
        htpasswd = tmp / "htpasswd"
        htpasswd.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in users.items()))
        auth = f"auth:\n  htpasswd:\n    realm: devreg-test\n    path: {htpasswd}\n"
    elif auth_yaml:
        auth = auth_yaml
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp / 'data'}}}, delete: {{enabled: true}}}}\n"
        f'http: {{addr: "127.0.0.1:{port}"}}\n' + auth
    )
    log = (tmp / "registry.log").open("wb")
    proc = subprocess.Popen(
        [registry_bin(), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_answering("127.0.0.1", port)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
