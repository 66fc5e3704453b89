"""The real nodes of scripts/testenv (part ``nodes``) against themselves: real kubelets,
containerd, kube-proxy and CNI, no fakes.

What the product's tests rely on: two Ready real nodes (one here, one in a network
namespace of its own), the test images in every node's containerd, pods that run, reach
each other across nodes and answer on a NodePort at each node's own loopback, the
kubelet's exec and logs, kwok kept to its own tainted nodes, and a ``down nodes`` that
leaves nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.stream import stream

from tests.plugins.testenv import RealNode, TestEnv, find_real_nodes
from tests.scripts.testenv_test import script, wait_until

pytestmark = pytest.mark.testenv


@pytest.fixture(scope="module")
def core(kube_api_client: Any) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = f"nodes-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, grace_period_seconds=0)


def busybox_pod(
    testenv: TestEnv, name: str, node: str, command: str, *, port: int | None = None
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": testenv.base_image,
        "imagePullPolicy": "Never",  # imported into every node by scripts/testenv
        "command": ["/bin/sh", "-c", command],
    }
    if port is not None:
        container["readinessProbe"] = {
            "httpGet": {"path": "/", "port": port},
            "periodSeconds": 1,
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [container],
        },
    }


def pod_phase(core: client.CoreV1Api, namespace: str, name: str) -> str:
    return str(core.read_namespaced_pod(name, namespace).status.phase)


def pod_ready(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    status = core.read_namespaced_pod(name, namespace).status
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])


def test_two_real_nodes_one_here_one_in_its_own_namespace(
    real_nodes: list[RealNode], core: client.CoreV1Api
) -> None:
    assert len(real_nodes) >= 2
    here = [n for n in real_nodes if n.netns is None]
    away = [n for n in real_nodes if n.netns is not None]
    assert here and away, real_nodes
    # Each lives where it says: its address is on an interface of its own namespace.
    for node in real_nodes:
        shown = subprocess.run(
            node.run_in(["ip", "-o", "-4", "addr", "show"]), capture_output=True, text=True
        ).stdout
        assert f" {node.address}/" in shown, (node, shown)
    # kwok keeps its own nodes, tainted: no pod lands there unless it tolerates that.
    fake = [
        n
        for n in core.list_node().items
        if not (n.status.node_info.container_runtime_version or "").startswith("containerd://")
    ]
    for node in fake:
        taints = {(t.key, t.effect) for t in node.spec.taints or []}
        assert ("kwok.x-k8s.io/node", "NoSchedule") in taints, node.metadata.name


def test_every_node_holds_the_test_images(testenv: TestEnv, real_nodes: list[RealNode]) -> None:
    for node in real_nodes:
        sock = Path(testenv.state_dir) / "nodes" / node.name / "containerd.sock"
        listed = subprocess.run(
            ["ctr", "--address", str(sock), "--namespace", "k8s.io", "images", "ls", "-q"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for image in (testenv.base_image, testenv.registry_image, "devreg-test/pause:latest"):
            full = image if "/" in image.split(":")[0] else f"library/{image}"
            assert f"docker.io/{full}" in listed, (node.name, listed)


def test_pods_reach_each_other_across_nodes_and_node_ports_answer_on_each_loopback(
    testenv: TestEnv, real_nodes: list[RealNode], core: client.CoreV1Api, namespace: str
) -> None:
    here = next(n for n in real_nodes if n.netns is None)
    away = next(n for n in real_nodes if n.netns is not None)
    serve = (
        "mkdir -p /tmp/www && echo served-by-$(hostname) > /tmp/www/index.html && "
        "exec httpd -f -p 8080 -h /tmp/www"
    )
    core.create_namespaced_pod(namespace, busybox_pod(testenv, "web", away.name, serve, port=8080))
    core.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [{"port": 8080, "targetPort": 8080}],
            },
        },
    )
    wait_until("pod web Ready", lambda: pod_ready(core, namespace, "web"), 90)
    web_ip = core.read_namespaced_pod("web", namespace).status.pod_ip
    assert web_ip.startswith("10.244."), web_ip

    # A pod on the other node fetches from the web pod's own address.
    fetch = f"wget -q -O - http://{web_ip}:8080/"
    core.create_namespaced_pod(namespace, busybox_pod(testenv, "client", here.name, fetch))
    wait_until(
        "pod client Succeeded",
        lambda: pod_phase(core, namespace, "client") in ("Succeeded", "Failed"),
        90,
    )
    assert pod_phase(core, namespace, "client") == "Succeeded"
    assert core.read_namespaced_pod_log("client", namespace).strip() == "served-by-web"

    # The NodePort answers on each node's own loopback (kube-proxy's localhost rule),
    # here across the bridge to the pod on the other node.
    node_port = core.read_namespaced_service("web", namespace).spec.ports[0].node_port
    url = f"http://127.0.0.1:{node_port}/"
    for node in real_nodes:

        def answer(node: RealNode = node) -> str:
            done = subprocess.run(
                node.run_in(["busybox", "wget", "-q", "-O", "-", url]),
                capture_output=True,
                text=True,
                timeout=10,
            )
            return done.stdout.strip()

        assert wait_until(f"{url} on {node.name}", answer, 30) == "served-by-web"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.read().decode().strip() == "served-by-web"


def test_exec_and_logs_go_through_each_real_kubelet(
    testenv: TestEnv, real_nodes: list[RealNode], core: client.CoreV1Api, namespace: str
) -> None:
    for node in real_nodes:
        name = f"sleeper-{node.name}"
        pod = busybox_pod(testenv, name, node.name, "echo started; exec sleep 3600")
        core.create_namespaced_pod(namespace, pod)
        wait_until(f"{name} Running", lambda n=name: pod_phase(core, namespace, n) == "Running")
        out = stream(
            core.connect_get_namespaced_pod_exec,
            name,
            namespace,
            command=["/bin/sh", "-c", "echo exec-on-$(hostname)"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        assert out.strip() == f"exec-on-{name}"
        wait_until(
            f"{name} logs",
            lambda n=name: core.read_namespaced_pod_log(n, namespace).strip() == "started",
        )


def bridge_ports() -> set[str]:
    """The links attached to the nodes' bridges in this namespace (pods' veths, the
    netns nodes' veths): Docker's own veths and others' stay out of the check."""
    ports = set()
    for bridge in ("devreg-br", "devreg-cni0"):
        shown = subprocess.run(
            ["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True
        ).stdout
        ports |= {line.split(":")[1].strip().split("@")[0] for line in shown.splitlines()}
    return ports


def node_traces(testenv: TestEnv, ports: set[str]) -> dict[str, Any]:
    """Everything of the nodes that `down nodes` must remove; ``ports`` are the links
    that were on the nodes' bridges before."""
    nodes_dir = str(Path(testenv.state_dir) / "nodes")
    procs = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if nodes_dir in cmd:
                procs.append(cmd[:120])
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    mounts = Path("/proc/self/mountinfo").read_text()
    return {
        "processes": procs,
        "netns": [
            n
            for n in subprocess.run(
                ["ip", "netns", "list"], capture_output=True, text=True
            ).stdout.split()
            if n.startswith("devreg-")
        ],
        "links": [
            w.rstrip(":").split("@")[0]
            for w in links.split()
            if w.startswith("devreg-") or w.rstrip(":").split("@")[0] in ports
        ],
        "iptables": [
            line
            for tool in ("iptables-save", "ip6tables-save")
            for line in subprocess.run([tool], capture_output=True, text=True).stdout.splitlines()
            if "KUBE-" in line or "DEVREG-" in line
        ],
        "mounts": [line for line in mounts.splitlines() if nodes_dir in line],
    }


@pytest.mark.slow
def test_down_nodes_removes_every_trace_and_up_brings_them_back(
    testenv: TestEnv,
    real_nodes: list[RealNode],
    kube_api_client: Any,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    for node in real_nodes:  # a pod on each: its sandbox, veth and mounts must go too
        name = f"sleeper-{node.name}"
        core.create_namespaced_pod(namespace, busybox_pod(testenv, name, node.name, "sleep 3600"))
        wait_until(f"{name} Running", lambda n=name: pod_phase(core, namespace, n) == "Running")
    state = json.loads((Path(testenv.state_dir) / "state.json").read_text())
    route_localnet_before = state["sysctl_route_localnet"]
    ports = bridge_ports()
    assert any(p.startswith("veth") for p in ports), ports  # the sleeper on node 0
    t0 = time.monotonic()
    down = script("down", "nodes", timeout=300)
    down_s = time.monotonic() - t0
    try:
        assert down.returncode == 0, down.stderr
        assert node_traces(testenv, ports) == {
            "processes": [],
            "netns": [],
            "links": [],
            "iptables": [],
            "mounts": [],
        }
        assert find_real_nodes(kube_api_client, testenv) == []
        names = {n.metadata.name for n in core.list_node().items}
        assert not names & {n.name for n in real_nodes}
        # kube-proxy turned it on for localhost NodePorts; what was is back
        route_localnet = Path("/proc/sys/net/ipv4/conf/all/route_localnet").read_text()
        assert route_localnet.strip() == route_localnet_before
    finally:
        t1 = time.monotonic()
        up = script("up", "nodes", timeout=600)
        up_s = time.monotonic() - t1
    assert up.returncode == 0, up.stderr
    back = wait_until(
        "the real nodes Ready again",
        lambda: len(find_real_nodes(kube_api_client, testenv)) >= len(real_nodes),
        120,
    )
    assert back
    print(json.dumps({"down_nodes_s": round(down_s, 1), "up_nodes_s": round(up_s, 1)}))
