"""The pull probe on the test environment's real nodes (scripts/testenv part ``nodes``):
`devreg up` and `devreg status` prove that every node workloads can land on pulls from
``localhost:<nodePort>``, and name the cause and the fix when one cannot.

The failures are made for real on node ``devreg-node-1`` and undone afterwards:
- a runtime that insists on HTTPS: containerd's ``hosts.toml`` for the registry's host
  with an ``https`` server (read at each pull), then the fix devreg prints, applied;
- a node whose kube-proxy does not serve the node port on its own loopback (as in
  nftables or ipvs mode): kube-proxy's DNAT skipped for 127.0.0.1 in the node's network
  namespace, so the pull meets a closed port.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.testenv import RealNode, TestEnv
from tests.watcher.e2e import copy_example, devreg

pytestmark = [pytest.mark.testenv, pytest.mark.slow]

TESTENV_DIR = Path(os.environ.get("DEVREG_TESTENV_DIR", "/tmp/devreg-testenv"))


def up(
    project: Path, namespace: str, *extra: str, check: bool = True
) -> tuple[dict[str, Any], str, int]:
    done = devreg(
        "up", "-n", namespace, "-o", "json", "--timeout", "90", *extra, cwd=project, check=check
    )
    return json.loads(done.stdout), done.stderr, done.returncode


def probe_pods(core: Any, namespace: str) -> list[Any]:
    selector = "app.kubernetes.io/component=pull-probe"
    return [
        p
        for p in core.list_namespaced_pod(namespace, label_selector=selector).items
        if p.metadata.deletion_timestamp is None
    ]


def by_node(probe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["node"]: n for n in probe["nodes"]}


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "hello").parent


def test_every_real_node_pulls_and_the_result_is_cached(
    testenv: TestEnv, real_nodes: list[RealNode], core: Any, namespace: str, hello: Path
) -> None:
    endpoint, err, _ = up(hello, namespace)
    probe = endpoint["pull_probe"]
    assert probe["ok"] and not probe["cached"], probe
    nodes = by_node(probe)
    for node in real_nodes:
        assert nodes[node.name]["state"] == "pulled", nodes[node.name]
    # kwok's and the kind node are tainted NoSchedule: no workload lands there.
    skipped = {n for n, r in nodes.items() if r["state"] == "skipped"}
    assert skipped and all("taint" in nodes[n]["says"] for n in skipped)
    assert probe_pods(core, namespace) == []  # cleaned up
    assert f"pull probe: {len(real_nodes)} node(s) pull {endpoint['host']}" in err

    again, _, _ = up(hello, namespace)
    assert again["pull_probe"]["cached"] is True
    assert again["pull_probe"]["nodes"] == probe["nodes"]

    status = json.loads(
        devreg("status", "-n", namespace, "-o", "json", cwd=hello, check=False).stdout
    )
    assert status["registry"]["pull_probe"]["ok"] is True
    assert status["registry"]["pull_probe"]["cached"] is True


@contextlib.contextmanager
def hosts_toml(node: RealNode, host: str, scheme: str) -> Iterator[Path]:
    """containerd's hosts.toml for ``host`` on ``node`` (read at each pull)."""
    certs = TESTENV_DIR / "nodes" / node.name / "certs.d"
    assert certs.is_dir(), f"{certs}: the node's containerd certs.d (scripts/testenv nodes)"
    path = certs / host / "hosts.toml"
    path.parent.mkdir(exist_ok=True)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def netns_node(real_nodes: list[RealNode]) -> RealNode:
    node = next((n for n in real_nodes if n.netns is not None), None)
    assert node is not None, real_nodes
    return node


def test_a_runtime_that_insists_on_https_is_diagnosed_and_the_fix_works(
    testenv: TestEnv, real_nodes: list[RealNode], core: Any, namespace: str, hello: Path
) -> None:
    endpoint, _, _ = up(hello, namespace, "--no-probe")
    assert endpoint["pull_probe"] is None
    host = endpoint["host"]
    broken = netns_node(real_nodes)
    with hosts_toml(broken, host, "https") as toml:
        toml.write_text(
            f'server = "https://{host}"\n\n[host."https://{host}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
        )
        endpoint, err, code = up(hello, namespace, check=False)
        assert code == 1, err
        nodes = by_node(endpoint["pull_probe"])
        assert nodes[broken.name]["state"] == "failed"
        assert nodes[broken.name]["cause"] == "https-only"
        assert "server gave HTTP response to HTTPS client" in nodes[broken.name]["message"]
        assert all(nodes[n.name]["state"] == "pulled" for n in real_nodes if n.name != broken.name)
        assert probe_pods(core, namespace) == []
        text = devreg("status", "-n", namespace, cwd=hello, check=False)
        assert text.returncode == 1
        assert f"{broken.name}: cannot pull (https-only)" in text.stdout

        # The containerd setting devreg printed, as printed, makes the node pull.
        snippet = nodes[broken.name]["snippets"][0]
        body = snippet.split("\n", 1)[1]
        toml.write_text("\n".join(line.strip() for line in body.splitlines()) + "\n")
        fixed, err, code = up(hello, namespace)
        assert code == 0 and fixed["pull_probe"]["ok"], err
        assert by_node(fixed["pull_probe"])[broken.name]["state"] == "pulled"


@contextlib.contextmanager
def no_loopback_node_port(node: RealNode, node_port: int) -> Iterator[None]:
    """``node``'s kube-proxy rules no longer serve ``node_port`` on 127.0.0.1: connections
    made there skip kube-proxy's chains (``nat OUTPUT`` returns first) and meet a closed
    port, as with kube-proxy in nftables or ipvs mode, or ``localhostNodePorts: false``."""
    rule = ["OUTPUT", "-d", "127.0.0.0/8", "-p", "tcp", "--dport", str(node_port), "-j", "RETURN"]
    iptables = ["iptables", "-w", "-t", "nat"]
    subprocess.run(node.run_in([*iptables, "-I", *rule]), check=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run(node.run_in([*iptables, "-D", *rule]), check=True, timeout=30)


def test_a_node_port_refused_on_the_nodes_loopback_is_diagnosed(
    testenv: TestEnv, real_nodes: list[RealNode], core: Any, namespace: str, hello: Path
) -> None:
    endpoint, _, _ = up(hello, namespace, "--no-probe")
    broken = netns_node(real_nodes)
    with no_loopback_node_port(broken, endpoint["node_port"]):
        endpoint, err, code = up(hello, namespace, check=False)
        status = devreg("status", "-n", namespace, "-o", "json", cwd=hello, check=False)
    assert code == 1, err
    node = by_node(endpoint["pull_probe"])[broken.name]
    assert (node["state"], node["cause"]) == ("failed", "no-loopback-nodeport"), node
    assert "connection refused" in node["message"]
    assert "kube-proxy" in node["says"] and "iptables" in node["fix"]
    assert status.returncode == 1
    assert json.loads(status.stdout)["registry"]["pull_probe"]["ok"] is False
    assert probe_pods(core, namespace) == []
    # A failing result is not cached: with the port open again, the next run probes.
    healed, err, code = up(hello, namespace)
    assert code == 0 and healed["pull_probe"]["ok"] and not healed["pull_probe"]["cached"], err


def test_devreg_node_host_renames_the_registry_everywhere(hello: Path) -> None:
    env = {"DEVREG_NODE_HOST": "127.0.0.1"}
    done = devreg("preview", "--node-port", "31234", cwd=hello, env=env)
    assert "127.0.0.1:31234/" in done.stdout and "localhost:31234" not in done.stdout
    bad = devreg("preview", cwd=hello, env={"DEVREG_NODE_HOST": "10.1.2.3"}, check=False)
    assert bad.returncode == 2
    assert "DEVREG_NODE_HOST='10.1.2.3' is not a loopback address" in bad.stderr
