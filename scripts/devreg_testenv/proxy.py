"""Part `proxy`: Debian's tinyproxy, a real HTTP forward proxy (CONNECT included).

The part installs it and exports where it is; it runs no process of its own. Each
test that needs a proxy starts one on a free loopback port with its own config and
log (tests/watcher/proxies.py), so that the log it reads holds only its requests.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from .common import Part, PartError, apt_install, log

TINYPROXY_BIN = "/usr/bin/tinyproxy"


def up_proxy(state: dict[str, Any]) -> None:
    part = "proxy"
    if not Path(TINYPROXY_BIN).is_file():
        apt_install(part, ["tinyproxy-bin"])
    problems = proxy_problems(state)
    if problems:
        raise PartError(part, "; ".join(problems), [TINYPROXY_BIN, "-v"])
    log(f"proxy: {TINYPROXY_BIN} is there")


def proxy_problems(state: dict[str, Any]) -> list[str]:
    try:
        proc = subprocess.run(
            [TINYPROXY_BIN, "-v"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError as e:
        return [f"{TINYPROXY_BIN} does not run: {e.strerror}"]
    if proc.returncode != 0 or "tinyproxy" not in (proc.stdout + proc.stderr).lower():
        return [f"{TINYPROXY_BIN} -v exited with {proc.returncode}"]
    return []


def proxy_exports(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [("DEVREG_TEST_TINYPROXY", TINYPROXY_BIN)]


PART = Part(up_proxy, proxy_problems, proxy_exports)
