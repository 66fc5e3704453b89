"""The kind node of scripts/testenv (part ``kind``) against the real ``kind`` CLI.

What devreg's kind path relies on: a Docker container labelled for a kind cluster
that is also a Ready node of the test API server (containerd, a real kubelet), the
real ``kind`` finding it, ``kind load docker-image`` putting a locally built image into
its containerd, a pod pinned there running that image with ``imagePullPolicy: Never``,
kind's own errors, and a ``down kind`` that leaves nothing behind.  The one adaptation
(scripts/kind-path/docker drops ``--privileged`` from ``docker exec``) is checked here
too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.plugins.testenv import (
    KindCluster,
    TestEnv,
    find_real_nodes,
    parse_exports,
)
from tests.scripts.testenv_test import script, wait_until

pytestmark = pytest.mark.testenv

TAINT = ("devreg.test/kind", "only", "NoSchedule")


@pytest.fixture(scope="module")
def core(kube_api_client: Any) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = f"kind-{secrets.token_hex(4)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, grace_period_seconds=0)


def kind(cluster: KindCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """The real kind, with the docker shim first on its PATH (as devreg's tests run it)."""
    return subprocess.run(
        [cluster.kind, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": cluster.path()},
    )


def container(testenv: TestEnv, name: str) -> dict[str, Any] | None:
    done = subprocess.run(
        [testenv.docker_cli, "container", "inspect", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return dict(json.loads(done.stdout)[0]) if done.returncode == 0 else None


def build_image(testenv: TestEnv, tmp_path: Path, reference: str, message: str) -> str:
    """A local image FROM the busybox base that prints ``message``; returns its id."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f'FROM {testenv.base_image}\nRUN echo {message} > /message\nCMD ["cat", "/message"]\n'
    )
    subprocess.run(
        [testenv.docker_cli, "build", "-q", "-t", reference, str(ctx)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )
    done = subprocess.run(
        [testenv.docker_cli, "image", "inspect", "-f", "{{.Id}}", reference],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def pinned_pod(name: str, node: str, image: str) -> dict[str, Any]:
    """A pod pinned to ``node`` (``nodeName``: no scheduler, so no toleration needed)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never"}],
        },
    }


def pod_phase(core: client.CoreV1Api, namespace: str, name: str) -> str:
    return str(core.read_namespaced_pod(name, namespace).status.phase)


# ------------------------------------------------------------------------------------


def test_the_node_is_a_kind_labelled_container_and_a_ready_real_node(
    testenv: TestEnv, kind_cluster: KindCluster, core: client.CoreV1Api, kube_api_client: Any
) -> None:
    info = container(testenv, kind_cluster.node)
    assert info is not None and info["State"]["Running"]
    labels = info["Config"]["Labels"]
    assert labels["io.x-k8s.kind.cluster"] == kind_cluster.name
    assert labels["io.x-k8s.kind.role"] == "control-plane"
    assert info["Config"]["Hostname"] == kind_cluster.node  # as kind's nodes
    assert info["HostConfig"]["Privileged"] is False  # caps instead (docs/testenv.md)

    node = core.read_node(kind_cluster.node)
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    address = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    assert address == info["NetworkSettings"]["IPAddress"]
    # Pods land there only when they ask: tainted, and left out of the other tests'
    # "real nodes".
    assert {(t.key, t.value, t.effect) for t in node.spec.taints or []} == {TAINT}
    assert node.metadata.labels["devreg.test/node"] == "kind"
    assert kind_cluster.node not in {n.name for n in find_real_nodes(kube_api_client, testenv)}

    # The context kind would write: kind-<cluster>, the admin on the test API server.
    config = json.loads(Path(testenv.kubeconfig).read_text())
    contexts = {c["name"]: c["context"] for c in config["contexts"]}
    assert kind_cluster.context == f"kind-{kind_cluster.name}"
    assert contexts[kind_cluster.context]["user"] == contexts[testenv.context]["user"]
    assert contexts[kind_cluster.context]["cluster"] == contexts[testenv.context]["cluster"]


def test_the_real_kind_finds_the_cluster_and_its_node(kind_cluster: KindCluster) -> None:
    version = kind(kind_cluster, "version")
    assert version.returncode == 0 and version.stdout.startswith("kind v0.33.0"), version
    clusters = kind(kind_cluster, "get", "clusters")
    assert kind_cluster.name in clusters.stdout.split(), clusters
    nodes = kind(kind_cluster, "get", "nodes", "--name", kind_cluster.name)
    assert nodes.returncode == 0, nodes.stderr
    assert nodes.stdout.split() == [kind_cluster.node]


def test_kind_load_puts_the_image_in_the_node_and_a_pinned_pod_runs_it(
    testenv: TestEnv,
    kind_cluster: KindCluster,
    core: client.CoreV1Api,
    namespace: str,
    tmp_path: Path,
) -> None:
    token = secrets.token_hex(6)
    reference = f"devreg-test/kindload-{token}:v1"
    image_id = build_image(testenv, tmp_path, reference, f"loaded-{token}")
    try:
        assert kind_cluster.image_id(reference) is None

        loaded = kind(kind_cluster, "load", "docker-image", "--name", kind_cluster.name, reference)
        assert loaded.returncode == 0, loaded.stderr
        assert f'not yet present on node "{kind_cluster.node}", loading...' in loaded.stderr
        assert kind_cluster.image_id(reference) == image_id  # in the node's containerd

        again = kind(kind_cluster, "load", "docker-image", "--name", kind_cluster.name, reference)
        assert again.returncode == 0, again.stderr
        assert "found to be already present on all nodes" in again.stderr

        core.create_namespaced_pod(namespace, pinned_pod("app", kind_cluster.node, reference))
        wait_until(
            "the pod on the kind node to finish",
            lambda: pod_phase(core, namespace, "app") in ("Succeeded", "Failed"),
            timeout=60,
        )
        assert pod_phase(core, namespace, "app") == "Succeeded"
        assert core.read_namespaced_pod_log("app", namespace) == f"loaded-{token}\n"
    finally:
        with contextlib.suppress(ApiException):
            core.delete_namespaced_pod("app", namespace, grace_period_seconds=0)
        kind_cluster.node_exec(
            "ctr", "--namespace=k8s.io", "images", "rm", f"docker.io/{reference}"
        )
        subprocess.run([testenv.docker_cli, "rmi", "-f", reference], capture_output=True)


def test_kind_own_errors(testenv: TestEnv, kind_cluster: KindCluster, tmp_path: Path) -> None:
    """The words devreg turns into its messages (watcher's kind path)."""
    reference = f"devreg-test/kindmissing-{secrets.token_hex(4)}:v1"
    missing = kind(kind_cluster, "load", "docker-image", "--name", kind_cluster.name, reference)
    assert missing.returncode == 1
    assert f'ERROR: image: "{reference}" not present locally' in missing.stderr

    nowhere = kind(kind_cluster, "load", "docker-image", "--name", "no-such-cluster", "x:1")
    assert nowhere.returncode == 1
    assert 'ERROR: image: "x:1" not present locally' in nowhere.stderr  # images come first
    build_image(testenv, tmp_path, reference, "x")
    try:
        nowhere = kind(kind_cluster, "load", "docker-image", "--name", "no-such-cluster", reference)
        assert nowhere.returncode == 1
        assert 'ERROR: no nodes found for cluster "no-such-cluster"' in nowhere.stderr
    finally:
        subprocess.run([testenv.docker_cli, "rmi", "-f", reference], capture_output=True)


def test_the_docker_shim_drops_privileged_from_exec_only(
    kind_cluster: KindCluster, tmp_path: Path
) -> None:
    shown = tmp_path / "argv"
    fake = tmp_path / "docker"
    fake.write_text(f'#!/bin/sh\nfor a; do printf "[%s]" "$a"; done > {shown}\n')
    fake.chmod(0o755)
    shim = Path(kind_cluster.shim_dir) / "docker"
    cases = {
        ("exec", "--privileged", "-i", "n", "ctr", "import", "--privileged", "-"): (
            "[exec][-i][n][ctr][import][--privileged][-]"
        ),
        ("exec", "-e", "X=--privileged", "--privileged", "-w", "/", "n", "sh", "-c", "a b"): (
            "[exec][-e][X=--privileged][-w][/][n][sh][-c][a b]"
        ),
        ("run", "--privileged", "img"): "[run][--privileged][img]",  # only exec
        ("ps", "-a", "--format", "{{.Names}}"): "[ps][-a][--format][{{.Names}}]",
    }
    for argv, expected in cases.items():
        subprocess.run(
            [str(shim), *argv], check=True, env={**os.environ, "DEVREG_KIND_REAL_DOCKER": str(fake)}
        )
        assert shown.read_text() == expected, argv


@pytest.mark.slow
def test_down_kind_leaves_no_trace_and_up_brings_it_back(
    testenv: TestEnv, kind_cluster: KindCluster, core: client.CoreV1Api
) -> None:
    before = container(testenv, kind_cluster.node)
    assert before is not None
    volumes = [m["Name"] for m in before["Mounts"] if m["Type"] == "volume"]
    assert volumes  # containerd's snapshots: an anonymous volume
    try:
        down = script("down", "kind", timeout=300)
        assert down.returncode == 0, down.stderr
        assert container(testenv, kind_cluster.node) is None
        listed = subprocess.run(
            [testenv.docker_cli, "volume", "ls", "-q"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert not set(volumes) & set(listed)
        with pytest.raises(ApiException) as gone:
            core.read_node(kind_cluster.node)
        assert gone.value.status == 404
        config = json.loads(Path(testenv.kubeconfig).read_text())
        assert kind_cluster.context not in {c["name"] for c in config["contexts"]}
        assert testenv.context in {c["name"] for c in config["contexts"]}
        assert not (Path(testenv.state_dir) / "kind").exists()
        assert not (Path(testenv.state_dir) / "logs" / "kind").exists()
        assert kind_cluster.name not in kind(kind_cluster, "get", "clusters").stdout.split()
        env = script("env", timeout=60)
        assert env.returncode == 0, env.stderr  # the rest still runs
        assert "DEVREG_TEST_KIND_CONTEXT" not in parse_exports(env.stdout)
    finally:
        up = script("up", "kind", timeout=600)
    assert up.returncode == 0, up.stderr
    assert parse_exports(up.stdout)["DEVREG_TEST_KIND_CONTEXT"] == kind_cluster.context
    node = core.read_node(kind_cluster.node)
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
