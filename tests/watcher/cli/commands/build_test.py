"""``devreg build`` on a kind cluster: build with the real engine, then
``kind load docker-image --name <cluster> <image>:<tag>`` (SPEC §2), with no
rewrite. kind itself is the one stand-in (tests/watcher/bin/kind says why)."""

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

from tests.watcher.e2e import (
    copy_example,
    devreg,
    devreg_argv,
    kubeconfig_with_context,
    processes_mentioning,
    wait_for,
)
from watcher.daemon import dotenv

FAKE_KIND_DIR = Path(__file__).resolve().parents[1] / "bin"


@pytest.mark.slow
def test_kind_load_and_no_second_build(tmp_path: Path, testenv: Any, docker_client: Any) -> None:
    image = f"ghcr.io/devreg-test/kind-{secrets.token_hex(4)}"
    config = copy_example(tmp_path / "hello", image=image)
    # `enabled` unset: on kind the image is loaded, not pushed (SPEC §2, rule 3).
    config.write_text(
        config.read_text().replace("  enabled: true\n", "").replace("  localbuild: true\n", "")
    )
    project = config.parent
    calls = tmp_path / "kind-calls"
    env = {
        "KUBECONFIG": str(kubeconfig_with_context(testenv, tmp_path / "kubeconfig", "kind-dev")),
        "PATH": f"{FAKE_KIND_DIR}{os.pathsep}{os.environ['PATH']}",
        "DEVREG_FAKE_KIND_LOG": str(calls),
    }
    try:
        first = devreg("build", "--format", "json", cwd=project, env=env)
        result = json.loads(first.stdout)["images"]["app"]
        assert result["state"] == "built", first.stderr
        tag = result["tag"]
        assert calls.read_text().splitlines() == [f"load docker-image --name dev {image}:{tag}"]
        variables = dotenv.read(project / ".devreg.env")
        assert variables["RUNTIME_IMAGES_APP"] == f"{image}:{tag}"  # not rewritten
        assert variables["RUNTIME_IMAGES_APP_IMAGE"] == image
        assert "DEVREG_REGISTRY" not in variables
        assert docker_client.images.get(f"{image}:{tag}")

        second = devreg("build", "--format", "json", cwd=project, env=env)
        again = json.loads(second.stdout)["images"]["app"]
        assert (again["state"], again["tag"]) == ("up-to-date", tag)
        assert f"building {image}:" not in second.stderr
        assert len(calls.read_text().splitlines()) == 1  # not loaded again either
        assert dotenv.read(project / ".devreg.env") == variables
    finally:
        with contextlib.suppress(Exception):
            for img in docker_client.images.list(name=image):
                docker_client.images.remove(img.id, force=True)


@pytest.mark.slow
def test_build_exec_runs_once_after_the_pass(
    tmp_path: Path, testenv: Any, docker_client: Any
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
    env = {
        "KUBECONFIG": str(kubeconfig_with_context(testenv, tmp_path / "kubeconfig", "kind-dev")),
        "PATH": f"{FAKE_KIND_DIR}{os.pathsep}{os.environ['PATH']}",
        "DEVREG_FAKE_KIND_LOG": str(tmp_path / "kind-calls"),
    }
    command = f'echo "$RUNTIME_IMAGES_APP $DEVREG_IMAGES" > {seen}; pwd'
    try:
        done = devreg("build", "--format", "json", "--exec", command, cwd=project, env=env)
        doc = json.loads(done.stdout)
        tag = doc["images"]["app"]["tag"]
        assert seen.read_text() == f"{image}:{tag} app\n"
        assert doc["exec"]["ok"] and doc["exec"]["exit_code"] == 0
        assert doc["exec"]["tail"] == [str(project)]
        assert f"[exec] {project}\n" in done.stderr  # CMD's output: stderr, prefixed

        failed = devreg("build", "--exec", "echo no >&2; exit 4", cwd=project, env=env, check=False)
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
    tmp_path: Path, testenv: Any, docker_client: Any
) -> None:
    image = f"ghcr.io/devreg-test/kindterm-{secrets.token_hex(4)}"
    config = copy_example(tmp_path / "hello", image=image)
    config.write_text(
        config.read_text().replace("  enabled: true\n", "").replace("  localbuild: true\n", "")
    )
    project = config.parent
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig_with_context(testenv, tmp_path / "kubeconfig", "kind-dev")),
        "PATH": f"{FAKE_KIND_DIR}{os.pathsep}{os.environ['PATH']}",
        "DEVREG_FAKE_KIND_LOG": str(tmp_path / "kind-calls"),
    }
    marker = str(5000 + secrets.randbelow(1000))
    build = subprocess.Popen(
        [*devreg_argv(), "build", "--exec", f"sleep {marker} & sleep {marker}; echo never"],
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
