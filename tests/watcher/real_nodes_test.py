"""The seed's path end to end on real nodes (scripts/testenv part ``nodes``), no stand-in:
``devreg up`` deploys the registry into the cluster and a real kubelet runs it; ``devreg
build`` pushes to ``localhost:<nodePort>``; a pod on *each* real node pulls
``$RUNTIME_IMAGES_APP`` through that node's own loopback (one node shares this
machine's network namespace, the other has its own, with its own kube-proxy) and runs
it; an edit under ``devreg watch`` gives a new tag whose pods run the new content.

And the port-forward through a real kubelet: devreg run in a network namespace where
no NodePort answers (``DEVREG_TEST_AWAY_NETNS``, with a Docker Engine of the test's own
there) pushes through its port-forward, the nodes still pull through their loopback,
and a registry pod deleted mid-watch is followed by the forward.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.plugins.testenv import RealNode, TestEnv
from tests.watcher.e2e import (
    PrivateDockerd,
    copy_example,
    devreg,
    wait_for,
)
from tests.watcher.pods import registry_pod, run_on_each_node

pytestmark = [pytest.mark.testenv, pytest.mark.slow]


@pytest.fixture
def project(tmp_path: Path, testenv: TestEnv) -> Path:
    """examples/hello under a repository name of its own, its script printing a marker."""
    config = copy_example(tmp_path / "hello", image=f"ghcr.io/example/seed-{uuid.uuid4().hex[:8]}")
    set_marker(config.parent, "v1")
    return config.parent


def set_marker(project: Path, marker: str) -> None:
    (project / "src" / "hello.sh").write_text(f'#!/bin/sh\necho "content {marker}"\n')


def dotenv(project: Path) -> dict[str, str]:
    values = {}
    for line in (project / ".devreg.env").read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            values[name] = value
    return values


def test_seed_path_on_real_nodes(
    testenv: TestEnv,
    real_nodes: list[RealNode],
    core: client.CoreV1Api,
    namespace: str,
    project: Path,
) -> None:
    up = devreg("up", "--namespace", namespace, "--format", "json", cwd=project)
    endpoint = json.loads(up.stdout)
    node_port = endpoint["node_port"]
    assert endpoint["reach"] == "localhost"  # node 0 shares this namespace: its NodePort

    # The registry really runs: Running and Ready on a real node, with a pod IP
    # from that node's bridge, as the kubelet reports it.
    pod = registry_pod(core, namespace)
    assert pod is not None
    assert pod.spec.node_name in {n.name for n in real_nodes}
    assert pod.status.phase == "Running"
    assert all(c.ready for c in pod.status.container_statuses)
    assert pod.status.pod_ip.startswith("10.244.")

    devreg("build", "--namespace", namespace, cwd=project)
    first = dotenv(project)
    image = first["RUNTIME_IMAGES_APP"]
    assert image.startswith(f"localhost:{node_port}/example/seed-")
    assert run_on_each_node(core, namespace, image, real_nodes) == {
        n.name: "content v1" for n in real_nodes
    }

    # An edit while the watcher runs: a new tag, and new pods on each node run it.
    devreg("watch", "--detach", "--namespace", namespace, cwd=project)
    try:
        set_marker(project, "v2")
        second = wait_for(
            lambda: (
                (d := dotenv(project))["RUNTIME_IMAGES_APP_TAG"] != first["RUNTIME_IMAGES_APP_TAG"]
                and d
            ),
            timeout=120,
            what="a new tag in .devreg.env",
        )
    finally:
        devreg("stop", cwd=project)
    assert run_on_each_node(core, namespace, second["RUNTIME_IMAGES_APP"], real_nodes) == {
        n.name: "content v2" for n in real_nodes
    }


@pytest.fixture
def away(testenv: TestEnv) -> Iterator[tuple[str, PrivateDockerd, str]]:
    """A Docker Engine of this test's own in the away namespace, where no NodePort
    answers: (netns, engine, kubeconfig)."""
    netns = os.environ.get("DEVREG_TEST_AWAY_NETNS")
    kubeconfig = os.environ.get("DEVREG_TEST_AWAY_KUBECONFIG")
    if not netns or not kubeconfig:
        pytest.fail("scripts/testenv exported no DEVREG_TEST_AWAY_NETNS / _KUBECONFIG")
    engine = PrivateDockerd(Path(tempfile.mkdtemp(prefix="devreg-away-")), netns=netns)
    engine.start()
    try:
        engine.load(testenv.base_image)
        yield netns, engine, kubeconfig
    finally:
        engine.stop()


def in_netns(netns: str, *args: str) -> tuple[str, ...]:
    return ("nsenter", f"--net=/var/run/netns/{netns}", *args)


def test_port_forward_through_a_real_kubelet_from_where_no_node_port_answers(
    testenv: TestEnv,
    real_nodes: list[RealNode],
    core: client.CoreV1Api,
    namespace: str,
    project: Path,
    away: tuple[str, PrivateDockerd, str],
) -> None:
    netns, engine, kubeconfig = away
    env = {"DOCKER_HOST": engine.host, "KUBECONFIG": kubeconfig}

    def away_devreg(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = in_netns(netns, *devreg_cli(), *args)
        return run(argv, cwd=project, env=env, check=check)

    up = json.loads(away_devreg("up", "--namespace", namespace, "--format", "json").stdout)
    assert up["reach"] == "port-forward", up
    # No NodePort answers on that loopback: only the forward gets a push through.
    refused = subprocess.run(
        in_netns(netns, "curl", "-s", "-m", "3", f"http://127.0.0.1:{up['node_port']}/v2/"),
        capture_output=True,
    )
    assert refused.returncode != 0

    away_devreg("watch", "--detach", "--namespace", namespace)
    try:
        first = wait_for(
            lambda: (
                (project / ".devreg.env").exists()
                and "RUNTIME_IMAGES_APP" in (d := dotenv(project))
                and d
            ),
            timeout=120,
            what="the first build through the port-forward",
        )
        log = (project / ".devreg" / "watch.log").read_text()
        assert f"forwarding 127.0.0.1:{up['node_port']} to the registry pod" in log, log
        assert run_on_each_node(core, namespace, first["RUNTIME_IMAGES_APP"], real_nodes) == {
            n.name: "content v1" for n in real_nodes
        }

        # The registry pod is replaced mid-watch (emptyDir: it comes back empty): the
        # forward follows the new pod, the watcher re-pushes, the next edit lands.
        old = registry_pod(core, namespace)
        core.delete_namespaced_pod(old.metadata.name, namespace, grace_period_seconds=0)

        def replaced() -> bool:
            pod = registry_pod(core, namespace)
            statuses = (pod and pod.status.container_statuses) or []
            return bool(statuses) and pod.metadata.uid != old.metadata.uid and statuses[0].ready

        wait_for(replaced, timeout=120, what="a new Ready registry pod")
        set_marker(project, "v2")
        second = wait_for(
            lambda: (
                (d := dotenv(project))["RUNTIME_IMAGES_APP_TAG"] != first["RUNTIME_IMAGES_APP_TAG"]
                and d
            ),
            timeout=120,
            what="a new tag after the registry pod was replaced",
        )
        assert run_on_each_node(core, namespace, second["RUNTIME_IMAGES_APP"], real_nodes) == {
            n.name: "content v2" for n in real_nodes
        }
    finally:
        away_devreg("stop", check=False)


def devreg_cli() -> list[str]:
    from tests.watcher.e2e import devreg_argv

    return devreg_argv()


def run(
    argv: tuple[str, ...], *, cwd: Path, env: dict[str, str], check: bool
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and done.returncode != 0:
        log = cwd / ".devreg" / "watch.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise AssertionError(
            f"{' '.join(argv)} exited {done.returncode}\n{done.stdout}\n{done.stderr}\n{tail}"
        )
    return done
