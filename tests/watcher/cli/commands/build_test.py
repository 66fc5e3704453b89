"""``devreg build --exec CMD`` on the test environment's kind cluster (the real
``kind`` CLI and kind node, part ``kind``): the build, ``kind load`` and
``.devreg.env`` come first, then CMD. The kind path itself, end to end and with
kind's failures, is tests/watcher/kind_cluster_test.py."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.testenv import KindCluster
from tests.watcher.e2e import (
    copy_example,
    devreg,
    devreg_argv,
    processes_mentioning,
    wait_for,
)


@pytest.mark.slow
def test_build_exec_runs_once_after_the_pass(
    tmp_path: Path, testenv: Any, docker_client: Any, kind_cluster: KindCluster
) -> None:
    """``devreg build --exec CMD``: CMD runs once, after ``.devreg.env`` is
    written, with its variables; its failure makes ``build`` exit 1."""
    image = f"ghcr.io/devreg-test/kindexec-{secrets.token_hex(4)}"
    config = copy_example(tmp_path / "hello", image=image)
    config.write_text(
        config.read_text().replace("  enabled: true\n", "").replace("  localbuild: true\n", "")
    )
    project = config.parent
    seen = tmp_path / "seen"
    env = {"PATH": kind_cluster.path()}
    on_kind = ("--context", kind_cluster.context)
    command = f'echo "$RUNTIME_IMAGES_APP $DEVREG_IMAGES" > {seen}; pwd'
    try:
        done = devreg(
            "build", *on_kind, "--format", "json", "--exec", command, cwd=project, env=env
        )
        doc = json.loads(done.stdout)
        tag = doc["images"]["app"]["tag"]
        assert seen.read_text() == f"{image}:{tag} app\n"
        assert doc["exec"]["ok"] and doc["exec"]["exit_code"] == 0
        assert doc["exec"]["tail"] == [str(project)]
        assert f"[exec] {project}\n" in done.stderr  # CMD's output: stderr, prefixed

        failed = devreg(
            "build", *on_kind, "--exec", "echo no >&2; exit 4", cwd=project, env=env, check=False
        )
        assert failed.returncode == 1
        assert "[exec] no\n" in failed.stderr
        assert "[exec] FAILED: `echo no >&2; exit 4` exited 4 after " in failed.stderr
        assert "the watcher goes on" not in failed.stderr
    finally:
        with contextlib.suppress(Exception):
            for img in docker_client.images.list(name=image):
                docker_client.images.remove(img.id, force=True)


@pytest.mark.slow
def test_sigterm_during_build_exec_stops_it_with_its_group(
    tmp_path: Path, testenv: Any, docker_client: Any, kind_cluster: KindCluster
) -> None:
    image = f"ghcr.io/devreg-test/kindterm-{secrets.token_hex(4)}"
    config = copy_example(tmp_path / "hello", image=image)
    config.write_text(
        config.read_text().replace("  enabled: true\n", "").replace("  localbuild: true\n", "")
    )
    project = config.parent
    env = {**os.environ, "PATH": kind_cluster.path()}
    marker = str(5000 + secrets.randbelow(1000))
    build = subprocess.Popen(
        [
            *devreg_argv(),
            "build",
            "--context",
            kind_cluster.context,
            "--exec",
            f"sleep {marker} & sleep {marker}; echo never",
        ],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: len(processes_mentioning(f"sleep {marker}")) >= 2,
            timeout=120,
            what="CMD to run",
        )
        build.send_signal(signal.SIGTERM)
        _, err = build.communicate(timeout=30)
        assert build.returncode == 130, err
        assert f"[exec] `sleep {marker} & sleep {marker}; echo never` stopped with devreg" in err
        wait_for(lambda: not processes_mentioning(f"sleep {marker}"), what="no sleep left")
        assert not processes_mentioning(str(project))
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
        with contextlib.suppress(Exception):
            for img in docker_client.images.list(name=image):
                docker_client.images.remove(img.id, force=True)
