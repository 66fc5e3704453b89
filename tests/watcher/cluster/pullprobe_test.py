"""The pull probe on the test environment's real nodes (scripts/testenv part ``nodes``):
`devreg up` and `devreg status` prove that every node workloads can land on pulls from
``localhost:<nodePort>``, and name the cause and the fix when one cannot.

Two causes live in the test environment for good, each on an "odd" real node, tainted
``devreg.test/odd=<cause>:NoSchedule`` so that nothing lands there unless a test takes
the taint off for its probe (and puts it back):
- ``devreg-node-2`` resolves ``localhost`` to ``::1`` only (its containerd sees a
  private /etc/hosts, as on the k3d node of devspace-sh/devspace#2852);
- ``devreg-node-3`` runs kube-proxy in nftables mode (no node port on 127.0.0.1).

Two more are made for real on node ``devreg-node-1`` and undone afterwards:
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
from tests.watcher.e2e import copy_example, devreg, devreg_argv, wait_for
from tests.watcher.pods import run_on_each_node

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


def test_a_node_port_that_arrives_late_is_waited_for_not_diagnosed(
    testenv: TestEnv, real_nodes: list[RealNode], core: Any, namespace: str, hello: Path
) -> None:
    """A node whose kube-proxy programs the node port a moment after the registry is
    Ready (seen here: ~1 s late on a node of its own) refuses the first pull; the probe
    asks again and the node counts as pulling. The late kube-proxy is the refusing rule
    above, taken away once the node's first probe pod has failed."""
    endpoint, _, _ = up(hello, namespace, "--no-probe")
    late = netns_node(real_nodes)
    with no_loopback_node_port(late, endpoint["node_port"]):
        running = subprocess.Popen(
            [*devreg_argv(), "up", "-n", namespace, "-o", "json", "--timeout", "90"],
            cwd=hello,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def first_refusal() -> bool:
            selector = "app.kubernetes.io/component=pull-probe"  # terminating ones too
            for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
                waiting = [
                    c.state.waiting
                    for c in pod.status.container_statuses or []
                    if c.state and c.state.waiting
                ]
                refused = any("connection refused" in (w.message or "") for w in waiting)
                if pod.spec.node_name == late.name and refused:
                    return True
            return False

        wait_for(first_refusal, timeout=60, what=f"a refused probe pull on {late.name}")
    out, err = running.communicate(timeout=120)
    assert running.returncode == 0, err
    node = by_node(json.loads(out)["pull_probe"])[late.name]
    assert node["state"] == "pulled" and node["cause"] is None, node
    assert probe_pods(core, namespace) == []


def test_devreg_node_host_renames_the_registry_everywhere(hello: Path) -> None:
    env = {"DEVREG_NODE_HOST": "127.0.0.1"}
    done = devreg("preview", "--node-port", "31234", cwd=hello, env=env)
    assert "127.0.0.1:31234/" in done.stdout and "localhost:31234" not in done.stdout
    bad = devreg("preview", cwd=hello, env={"DEVREG_NODE_HOST": "10.1.2.3"}, check=False)
    assert bad.returncode == 2
    assert "DEVREG_NODE_HOST='10.1.2.3' is not a loopback address" in bad.stderr


@contextlib.contextmanager
def odd_node(core: Any, cause: str) -> Iterator[RealNode]:
    """The odd node broken by ``cause``, its taint taken off while the test probes it."""
    selector = "devreg.test/node=odd"
    found = [
        n
        for n in core.list_node(label_selector=selector).items
        if any(t.key == "devreg.test/odd" and t.value == cause for t in n.spec.taints or [])
    ]
    assert len(found) == 1, f"no odd node for {cause} (scripts/testenv nodes): {found}"
    node = found[0]
    taints = list(node.spec.taints)
    kept = [t for t in taints if t.key != "devreg.test/odd"]
    core.patch_node(node.metadata.name, {"spec": {"taints": kept or None}})
    try:
        yield RealNode(node.metadata.name, "", node.metadata.name)
    finally:
        core.patch_node(node.metadata.name, {"spec": {"taints": taints}})


def test_a_node_resolving_localhost_to_ipv6_is_diagnosed_and_127_0_0_1_works(
    testenv: TestEnv, real_nodes: list[RealNode], core: Any, namespace: str, tmp_path: Path
) -> None:
    hello = copy_example(tmp_path / "hello", image=f"ghcr.io/example/v6-{namespace[-8:]}").parent
    (hello / "src" / "hello.sh").write_text('#!/bin/sh\necho "ran $(basename $0)"\n')
    endpoint, _, _ = up(hello, namespace, "--no-probe")  # the registry lands on 0 or 1
    port = endpoint["node_port"]
    with odd_node(core, "ipv6-localhost") as node:
        endpoint, err, code = up(hello, namespace, check=False)
        assert code == 1, err
        found = by_node(endpoint["pull_probe"])[node.name]
        assert (found["state"], found["cause"]) == ("failed", "ipv6-localhost"), found
        assert f"dial tcp [::1]:{port}: connect: connection refused" in found["message"]
        assert f"127.0.0.1:{port} works on that node (probed)" in found["says"]
        assert "DEVREG_NODE_HOST=127.0.0.1" in found["fix"]
        assert probe_pods(core, namespace) == []

        # The fix, as offered: every node pulls 127.0.0.1:<port>/…, and the user's image
        # is named so and runs there.
        env = {"DEVREG_NODE_HOST": "127.0.0.1"}
        done = devreg("up", "-n", namespace, "-o", "json", cwd=hello, env=env)
        fixed = json.loads(done.stdout)
        assert fixed["host"] == f"127.0.0.1:{port}"
        assert fixed["pull_probe"]["ok"], done.stderr
        assert by_node(fixed["pull_probe"])[node.name]["state"] == "pulled"
        built = devreg("build", "-n", namespace, "-o", "json", cwd=hello, env=env)
        reference = json.loads(built.stdout)["images"]["app"]["reference"]
        assert reference.startswith(f"127.0.0.1:{port}/example/v6-")
        assert f"RUNTIME_IMAGES_APP={reference}" in (hello / ".devreg.env").read_text()
        ran = run_on_each_node(core, namespace, reference, [node, *real_nodes])
        assert set(ran.values()) == {"ran hello.sh"}


def test_a_node_whose_kube_proxy_runs_in_nftables_mode_is_diagnosed(
    testenv: TestEnv, real_nodes: list[RealNode], core: Any, namespace: str, hello: Path
) -> None:
    endpoint, _, _ = up(hello, namespace, "--no-probe")
    port = endpoint["node_port"]
    with odd_node(core, "nftables") as node:
        endpoint, err, code = up(hello, namespace, check=False)
    status = devreg("status", "-n", namespace, cwd=hello, check=False)
    assert code == 1, err
    found = by_node(endpoint["pull_probe"])[node.name]
    assert (found["state"], found["cause"]) == ("failed", "no-loopback-nodeport"), found
    assert f"dial tcp 127.0.0.1:{port}: connect: connection refused" in found["message"]
    assert "nftables" in found["says"]
    assert all(by_node(endpoint["pull_probe"])[n.name]["state"] == "pulled" for n in real_nodes)
    # status probed again with the taint back: the odd node is skipped, and says why.
    assert f"{node.name}: skipped (taint devreg.test/odd=nftables:NoSchedule)" in status.stdout


def test_the_watcher_probes_beside_its_builds_and_status_shows_it(
    testenv: TestEnv, real_nodes: list[RealNode], core: Any, namespace: str, hello: Path
) -> None:
    """The watcher keeps building whatever the probe finds; its result reaches the
    watcher's log and status file, and `devreg status --no-probe` shows it."""
    (hello / ".devreg").mkdir(exist_ok=True)
    devreg("watch", "--detach", "-n", namespace, cwd=hello)
    try:
        status_file = hello / ".devreg" / "status.json"

        def probed() -> dict[str, Any] | None:
            doc = json.loads(status_file.read_text()) if status_file.exists() else {}
            probe = doc.get("pull_probe") or {}
            return doc if probe.get("state") == "done" else None

        doc = wait_for(probed, timeout=120, what="the watcher's pull probe in status.json")
        assert doc["pull_probe"]["ok"] is True, doc["pull_probe"]
        nodes = by_node(doc["pull_probe"])
        assert all(nodes[n.name]["state"] == "pulled" for n in real_nodes)
        wait_for(
            lambda: (hello / ".devreg.env").exists(),
            timeout=120,
            what="the watcher's first delivery (the probe held nothing up)",
        )
        log = (hello / ".devreg" / "watch.log").read_text()
        assert f"pull probe: {len(real_nodes)} of " in log
        shown = devreg("status", "-n", namespace, "--no-probe", cwd=hello, check=False)
        assert "the watcher's" in shown.stdout
        assert f"  {real_nodes[0].name}: pulls" in shown.stdout
    finally:
        devreg("stop", cwd=hello)


@pytest.mark.parametrize(
    "planted",
    [None, "nodes", {"nodes": "x"}, {"nodes": [1]}, {"nodes": [{"node": 3}]}],
)
def test_status_trusts_no_planted_probe_result(planted: Any) -> None:
    from watcher.cli.commands.status import _saved_probe

    assert _saved_probe({"pull_probe": planted}) is None


def test_status_keeps_only_the_fields_the_watcher_writes() -> None:
    from watcher.cli.commands.status import _saved_probe
    from watcher.cluster.pullprobe import format_probe

    planted = {"nodes": [{"node": "n", "state": {"x": 1}, "snippets": "abc", "cause": 7}]}
    found = _saved_probe({"pull_probe": {**planted, "host": 5, "seconds": "x"}})
    assert found is not None
    (node,) = found["nodes"]
    assert (node["node"], node["state"], node["cause"], node["snippets"]) == ("n", None, None, [])
    assert (found["host"], found["seconds"], found["from_watcher"]) == ("?", 0, True)
    assert format_probe(found)[0].startswith("pull probe: 0 of 1 node(s) pull ?/")


def test_a_cache_file_of_another_shape_is_not_trusted(tmp_path: Path) -> None:
    """.devreg/pullprobe.json with the right key but what the probe never writes (a
    failing node, an escape sequence, wrong types) is read as no cache at all."""
    from watcher.cluster.pullprobe import CACHE_FILE, NodeResult, ProbeResult, _read_cache

    def planted(nodes: list[dict[str, Any]], host: str = "localhost:1") -> None:
        result = {"host": host, "seconds": 0.5, "nodes": nodes}
        (tmp_path / CACHE_FILE).write_text(json.dumps({"key": "k", "result": result}))

    good = {"node": "n0", "state": "pulled", "seconds": 0.4}
    planted([good])
    found = _read_cache(tmp_path, "k")
    assert found == ProbeResult("localhost:1", [NodeResult("n0", "pulled", 0.4)], seconds=0.5)
    assert _read_cache(tmp_path, "another key") is None
    for nodes, host in (
        ([{"node": "n0", "state": "failed"}], "localhost:1"),
        ([{"node": "n0", "state": "skipped", "says": "\x1b[2Jgone"}], "localhost:1"),
        ([{"node": 5, "state": "pulled"}], "localhost:1"),
        ([{"node": "n0", "state": "pulled", "extra": 1}], "localhost:1"),
        ([good], "\x1b]0;title\x07"),
    ):
        planted(nodes, host)
        assert _read_cache(tmp_path, "k") is None, nodes


def test_the_kubelets_words_reach_the_terminal_escaped() -> None:
    from watcher.cluster.pullprobe import format_probe

    node = {"node": "n1", "state": "failed", "cause": "unknown", "says": "the pull failed",
            "fix": "read it", "message": "boom \x1b[2J\x07 done", "snippets": []}  # fmt: skip
    lines = format_probe({"host": "localhost:1", "nodes": [node], "seconds": 0.1})
    kubelet = next(line for line in lines if "kubelet:" in line)
    assert "\x1b" not in kubelet and "\x07" not in kubelet and "boom" in kubelet


def test_a_probe_whose_pods_are_refused_is_shown_and_up_still_succeeds(
    testenv: TestEnv, real_nodes: list[RealNode], core: Any, namespace: str, hello: Path
) -> None:
    """The API server's own admission refuses the probe's pods (a ResourceQuota that
    the registry's pod already fills): `up` says so and exits 0."""
    up(hello, namespace, "--no-probe")
    quota = {"metadata": {"name": "one-pod"}, "spec": {"hard": {"pods": "1"}}}
    core.create_namespaced_resource_quota(namespace, quota)
    endpoint, err, code = up(hello, namespace, check=False)
    assert code == 0, err
    probe = endpoint["pull_probe"]
    assert probe["ok"] is False and "forbidden" in probe["error"].lower(), probe
    text = devreg("up", "-n", namespace, cwd=hello)
    assert "pull probe: could not run: the probe's pods: " in text.stdout
    assert probe_pods(core, namespace) == []
