"""Part `docker`: Debian's Docker Engine, installed when missing, dockerd started when
`/_ping` does not answer."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path
from typing import Any

from .common import (
    STATE,
    Part,
    apt_install,
    log,
    proc_alive,
    process_gone,
    run,
    save_state,
    start_process,
    wait_for,
)

DOCKER = "/usr/bin/docker"  # Debian's 20.10 CLI: BuildKit built in (see docs/testenv.md)
DOCKERD = "/usr/sbin/dockerd"
DOCKER_SOCK = "/var/run/docker.sock"
DOCKER_HOST = f"unix://{DOCKER_SOCK}"


def docker_api(method: str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """A tiny HTTP/1.0 client for the Docker socket (no SDK: this runs before pip)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(DOCKER_SOCK)
        s.sendall(f"{method} {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def docker_answers() -> bool:
    try:
        status, body = docker_api("GET", "/_ping", timeout=3)
    except OSError:
        return False
    return status == 200 and body.strip() == b"OK"


def up_docker(state: dict[str, Any]) -> None:
    part = "docker"
    if not Path(DOCKER).is_file() or not Path(DOCKERD).is_file():
        apt_install(part, ["docker.io"])
    if docker_answers():
        if not proc_alive(state, "dockerd"):
            state["owned_dockerd"] = False
            state["procs"].pop("dockerd", None)
        log("docker: the engine answers")
    else:
        state["procs"].pop("dockerd", None)
        argv = [DOCKERD, "--host", DOCKER_HOST]
        log(f"docker: starting {shlex.join(argv)}")
        proc = start_process(state, "dockerd", argv)
        state["owned_dockerd"] = True
        save_state(state)
        wait_for(
            part,
            "the Docker socket answering /_ping",
            docker_answers,
            90,
            alive=process_gone(state, "dockerd", proc),
            command=argv,
            log_path=STATE / "logs" / "dockerd.log",
        )
    # The CLI we use must talk to it too (the same check `docker info` makes).
    run(
        part,
        [DOCKER, "info", "--format", "{{.ServerVersion}}"],
        env={"DOCKER_HOST": DOCKER_HOST},
        timeout=60,
    )


def docker_problems(state: dict[str, Any]) -> list[str]:
    problems = []
    if not docker_answers():
        problems.append(f"the Docker Engine does not answer on {DOCKER_SOCK}")
    return problems


def docker_exports(state: dict[str, Any]) -> list[tuple[str, str]]:
    # DEVREG_DOCKER: devreg builds with the user's `docker` on PATH; here that
    # may be a newer CLI without buildx, so the tests (and scripts/demo) name
    # the one with BuildKit through devreg's own override.
    return [
        ("DOCKER_HOST", DOCKER_HOST),
        ("DEVREG_TEST_DOCKER_CLI", DOCKER),
        ("DEVREG_DOCKER", DOCKER),
    ]


PART = Part(up_docker, docker_problems, docker_exports, processes=("dockerd",))
