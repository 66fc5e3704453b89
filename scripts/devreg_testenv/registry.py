"""Part `registry`: Debian's docker-registry on a free loopback port, no auth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import (
    STATE,
    Part,
    apt_install,
    http_status,
    http_status_safe,
    log,
    port_for,
    proc_alive,
    process_gone,
    start_process,
    stop_process,
    wait_for,
)

REGISTRY_BIN = "/usr/bin/docker-registry"


def up_registry(state: dict[str, Any]) -> None:
    part = "registry"
    if not Path(REGISTRY_BIN).is_file():
        apt_install(part, ["docker-registry"])
    running = proc_alive(state, "registry")
    port = port_for(state, "registry", "DEVREG_TESTENV_REGISTRY_PORT", running=running)
    url = f"http://127.0.0.1:{port}/v2/"
    if running and http_status(url) == 200:
        log(f"registry: answers on 127.0.0.1:{port}")
        return
    stop_process(state, "registry")
    reg = STATE / "registry"
    (reg / "data").mkdir(parents=True, exist_ok=True)
    config = reg / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {reg / 'data'}\n  delete:\n    enabled: true\nhttp:\n"
        f"  addr: 127.0.0.1:{port}\n  headers:\n    X-Content-Type-Options: [nosniff]\n"
    )
    argv = [REGISTRY_BIN, "serve", str(config)]
    log(f"registry: starting on 127.0.0.1:{port}")
    env = {"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}"}
    proc = start_process(state, "registry", argv, env=env)
    wait_for(
        part,
        f"GET {url} answering 200",
        lambda: http_status(url) == 200,
        30,
        alive=process_gone(state, "registry", proc),
        command=argv,
        log_path=STATE / "logs" / "registry.log",
    )


def registry_problems(state: dict[str, Any]) -> list[str]:
    problems = []
    port = state["ports"].get("registry")
    if not proc_alive(state, "registry"):
        problems.append("the registry process is not running")
    elif http_status_safe(f"http://127.0.0.1:{port}/v2/") != 200:
        problems.append(f"the registry does not answer on 127.0.0.1:{port}")
    return problems


def registry_exports(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("DEVREG_TEST_REGISTRY", f"127.0.0.1:{state['ports']['registry']}"),
        ("DEVREG_TEST_REGISTRY_BIN", REGISTRY_BIN),
    ]


PART = Part(up_registry, registry_problems, registry_exports, processes=("registry",))
