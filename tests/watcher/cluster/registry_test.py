"""The facade: path per image (with the real push check), ensure_registry
against the real API server (deployed or KEP-1755), status, and the faults
of an unreachable API server."""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from hookpkg.config import LocalRegistry
from hookpkg.delivery import Cluster
from hookpkg.errors import FatalError
from tests.configs import config, image
from tests.watcher.e2e import wait_for
from tests.watcher.registries import free_port, running_registry
from watcher.cluster import kep1755
from watcher.cluster.kube import Kube
from watcher.cluster.pushcheck import PushChecker
from watcher.cluster.registry import (
    REACH_INTERVAL,
    RegistryEndpoint,
    RegistryUnreachable,
    Way,
    _unreachable,
    answers_v2,
    ensure_registry,
    first_answering,
    format_status,
    plan_delivery,
    status_info,
)

REMOTE = Cluster("remote", "gke_x")
KIND = Cluster("kind", "kind-dev", "dev")
LOCAL = Cluster("local", "docker-desktop")


@pytest.fixture
def registries(tmp_path: Path) -> Iterator[dict[str, str]]:
    with (
        running_registry(tmp_path / "open") as open_host,
        running_registry(tmp_path / "auth", users={"u": "p"}) as auth_host,
    ):
        yield {"OPEN": open_host, "AUTH": auth_host}


@pytest.mark.parametrize(
    ("enabled", "cluster", "ref", "builder", "word"),
    [
        pytest.param(None, REMOTE, "OPEN/org/app", "docker", "own-registry", id="remote-push-ok"),
        pytest.param(
            None, REMOTE, "AUTH/org/app", "docker", "local-registry", id="remote-push-refused"
        ),
        pytest.param(None, KIND, "AUTH/org/app", "docker", "kind-load", id="kind-unset"),
        pytest.param(None, LOCAL, "AUTH/org/app", "docker", "local-engine", id="local-unset"),
        pytest.param(True, REMOTE, "OPEN/org/app", "docker", "local-registry", id="enabled-true"),
        pytest.param(True, KIND, "OPEN/org/app", "docker", "local-registry", id="true-on-kind"),
        pytest.param(False, REMOTE, "AUTH/org/app", "docker", "own-registry", id="false-remote"),
        pytest.param(False, KIND, "AUTH/org/app", "docker", "kind-load", id="false-kind"),
        pytest.param(None, REMOTE, "AUTH/org/app", "kaniko", "own-registry", id="not-eligible"),
    ],
)
def test_plan_delivery(
    registries: dict[str, str],
    tmp_path: Path,
    enabled: bool | None,
    cluster: Cluster,
    ref: str,
    builder: str,
    word: str,
) -> None:
    for name, host in registries.items():
        ref = ref.replace(name, host)
    cfg = config(LocalRegistry(enabled=enabled), image("app", ref, builder))
    checker = PushChecker(env={"DOCKER_CONFIG": str(tmp_path / "empty")})
    plan = plan_delivery(cfg, cluster, context=None, checker=checker, ask_cluster=False)
    assert plan.paths == {"app": word}
    assert ("app" in plan.push_checks) == (
        enabled is None and cluster.kind == "remote" and builder == "docker"
    )


# --- waiting until the registry answers (real loopback sockets) ------------------------------


class _V2Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
        self.send_response(200 if self.path == "/v2/" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def v2_server(port: int = 0) -> Iterator[str]:
    """A real HTTP listener answering ``GET /v2/`` with 200 (what
    ``answers_v2`` asks of a registry)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _V2Handler)
    thread = threading.Thread(target=server.serve_forever, name="v2-server")
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """Accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"127.0.0.1:{s.getsockname()[1]}"


def probe(hostport: str) -> Way:
    def attempt(timeout: float) -> str | None:
        error = answers_v2(hostport, timeout=timeout)
        return None if error is None else f"{hostport}: {error}"

    return Way(hostport, attempt)


def test_a_registry_that_answers_at_once_costs_one_try() -> None:
    with v2_server() as host:
        ways = [probe(host), probe(f"127.0.0.1:{free_port()}")]
        started = time.monotonic()
        found = first_answering(ways, deadline=started + 30)
        took = time.monotonic() - started
    assert found is ways[0]
    assert (ways[0].tries, ways[1].tries) == (1, 0)  # the second way is never needed
    assert took < REACH_INTERVAL, took  # no wait at all on the healthy path


def test_a_listener_that_starts_answering_later_is_waited_for() -> None:
    """What kube-proxy does right after the registry is created: the node
    port refuses, then answers once its rule is programmed. The second way
    (the port-forward's place) keeps refusing meanwhile."""
    port = free_port()
    late = probe(f"127.0.0.1:{port}")
    servers = contextlib.ExitStack()

    def refuse_three_times_then_listen(timeout: float) -> str | None:
        error = probe(f"127.0.0.1:{port}").attempt(timeout)
        if late.tries == 3:
            servers.enter_context(v2_server(port))  # answers from the next round on
        return error

    late.attempt = refuse_three_times_then_listen
    other = probe(f"127.0.0.1:{free_port()}")
    with servers:
        started = time.monotonic()
        found = first_answering([late, other], deadline=started + 30)
        took = time.monotonic() - started
    assert found is late
    assert (late.tries, other.tries) == (4, 3)
    assert late.last_error is None
    assert other.last_error == f"{other.name}: connection refused"
    # Three pauses between four rounds, each one interval: nothing longer.
    assert 3 * REACH_INTERVAL <= took < 3 * REACH_INTERVAL + 2.0, took


def test_ways_that_never_answer_give_up_at_the_deadline_with_each_last_error() -> None:
    refused = probe(f"127.0.0.1:{free_port()}")
    with silent_listener() as host:
        silent = probe(host)
        started = time.monotonic()
        found = first_answering([refused, silent], deadline=started + 1.0)
        took = time.monotonic() - started
    assert found is None
    assert refused.last_error == f"{refused.name}: connection refused"
    assert silent.last_error is not None
    assert silent.last_error.startswith(f"{host}: no answer within ")
    # Each try of the silent one waits for what is left (at least 0.5 s), so
    # the rounds end within one probe of the deadline.
    assert refused.tries >= 1 and silent.tries >= 1
    assert 1.0 <= took < 1.0 + 0.5 + 1.0, took


def test_every_way_is_tried_once_even_past_the_deadline() -> None:
    """Readiness may have used the whole --timeout: the registry still gets
    one try each way, without a pause."""
    ways = [probe(f"127.0.0.1:{free_port()}"), probe(f"127.0.0.1:{free_port()}")]
    with v2_server() as host:
        ways.append(probe(host))
        found = first_answering(ways, deadline=time.monotonic() - 5)
    assert found is ways[2]
    assert [w.tries for w in ways] == [1, 1, 1]


def test_rounds_limits_the_tries() -> None:
    ways = [probe(f"127.0.0.1:{free_port()}")]
    started = time.monotonic()
    assert first_answering(ways, deadline=started + 30, rounds=1) is None
    assert ways[0].tries == 1
    assert time.monotonic() - started < REACH_INTERVAL


# --- against the API server -----------------------------------------------------------------


@pytest.fixture
def namespace(testenv: Any) -> Iterator[str]:
    name = f"devreg-t-{secrets.token_hex(4)}"
    yield name
    with Kube(testenv.context) as kube:
        kube.delete("Namespace", None, name)


@pytest.fixture
def kep_configmap(testenv: Any) -> Iterator[str]:
    """The cluster publishes the loopback registry (KEP-1755) for the test's
    duration. It is cluster-wide: kept as short as the test, and taken in
    turns with other test processes (the lock of ``published_registry``)."""
    lock_path = Path(testenv.state_dir) / "kep1755.lock"
    with open(lock_path, "a") as lock, Kube(testenv.context) as kube:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": kep1755.NAME, "namespace": kep1755.NAMESPACE},
                "data": {
                    kep1755.KEY: yaml.safe_dump(
                        {"host": testenv.registry, "help": "https://example.invalid/registry"}
                    )
                },
            },
            force=True,
        )
        try:
            yield testenv.registry
        finally:
            kube.delete("ConfigMap", kep1755.NAMESPACE, kep1755.NAME)


@pytest.fixture
def own_registry(testenv: Any) -> Iterator[None]:
    """No registry published by the cluster while the test runs: devreg
    deploys its own."""
    from tests.watcher.e2e import no_published_registry

    with no_published_registry(testenv):
        yield


def test_kep1755_registry_is_used_instead_of_deploying(
    testenv: Any, kep_configmap: str, namespace: str
) -> None:
    cfg = config(LocalRegistry(enabled=True, namespace=namespace), image("app", "org/app"))
    logged: list[str] = []
    endpoint = ensure_registry(
        cfg, context=testenv.context, namespace=None, timeout=30, log=logged.append
    )
    try:
        assert endpoint.source == "kep-1755"
        assert (endpoint.host, endpoint.push_host) == (kep_configmap, kep_configmap)
        assert endpoint.reach == "kep-1755"  # the loopback registry answers /v2/
        assert endpoint.kep1755 is not None
        assert endpoint.kep1755.help == "https://example.invalid/registry"
    finally:
        endpoint.close()
    with Kube(testenv.context) as kube:
        assert kube.get("Namespace", None, namespace) is None  # nothing deployed
    plan = plan_delivery(cfg, REMOTE, context=testenv.context)
    assert plan.kep1755 is not None and plan.kep1755.host == kep_configmap
    assert any("KEP-1755" in line for line in logged)


def test_a_new_registry_is_waited_for_until_it_answers_here(
    testenv: Any, namespace: str, own_registry: None
) -> None:
    """What the brief's real node showed: right after creation the pod is
    Ready but the node port still refuses (kube-proxy rejects a Service
    whose EndpointSlice does not list the pod yet). One try, as before,
    reports it unreachable; the required reach waits until it answers."""
    cfg = config(LocalRegistry(localbuild=True), image("app", "org/app"))
    logged: list[str] = []
    endpoint = ensure_registry(
        cfg, context=testenv.context, namespace=namespace, timeout=120, log=logged.append
    )
    try:
        assert endpoint.source == "deployed"
        assert (endpoint.namespace, endpoint.name, endpoint.workload_kind) == (
            namespace,
            "registry",
            "Deployment",
        )
        # The real node on this machine serves the node port (kube-proxy).
        assert endpoint.reach == "localhost" and endpoint.reach_error is None
        assert endpoint.push_host == endpoint.host == f"localhost:{endpoint.node_port}"
        assert answers_v2(endpoint.host) is None
        waited = [line for line in logged if line.startswith("waiting for localhost:")]
        if waited:  # the usual case here; timing decides, so not asserted
            assert any(line.startswith(f"{endpoint.host} answers after ") for line in logged)
    finally:
        endpoint.close()


def test_the_unreachable_error_names_each_way_and_what_to_check() -> None:
    endpoint = RegistryEndpoint(
        host="localhost:31234",
        push_host="localhost:31234",
        source="deployed",
        context="dev",
        server="https://127.0.0.1:6443",
        namespace="team",
        name="registry",
        node_port=31234,
        workload_kind="StatefulSet",
        pod="registry-0",
    )
    ways = [
        Way("localhost:31234", lambda t: None, "localhost:31234: connection refused", 12),
        Way(
            "port-forward 127.0.0.1:31234",
            lambda t: None,
            "port-forward to pod team/registry-0 port 5000 failed: error dialing backend",
            11,
        ),
    ]
    error = _unreachable(endpoint, ways, 120.2, pod_port=5000)
    assert isinstance(error, RegistryUnreachable) and error.exit_code == 1
    assert str(error).splitlines() == [
        "the registry localhost:31234 (StatefulSet team/registry, pod team/registry-0 Ready) "
        "does not answer GET /v2/ from this machine (tried for 120 s):",
        "  localhost:31234: connection refused (tried 12x)",
        "  port-forward to pod team/registry-0 port 5000 failed: error dialing backend (tried 11x)",
        "check:",
        "  - that node port 31234 is served on this machine (kube-proxy on a local node, a kind "
        "port mapping, minikube or Docker Desktop); a remote cluster uses the port-forward instead",
        "  - that the Service lists the Ready pod as an endpoint (kube-proxy refuses connections "
        "to a Service without one): `kubectl get endpointslices -n team "
        "-l kubernetes.io/service-name=registry`",
        "  - that the API server can reach the node's kubelet for the port-forward (`kubectl "
        "port-forward -n team statefulset/registry 31234:5000` fails the same way if not)",
        "  - the registry's log: `kubectl logs -n team statefulset/registry -c registry`",
        "  - a longer --timeout when the cluster is still starting",
    ]


def test_a_published_registry_that_answers_late_is_waited_for(testenv: Any, tmp_path: Path) -> None:
    """KEP-1755 host that refuses at first (its container still starting):
    ensure_registry keeps trying and uses it once it answers. The registry
    is started when devreg says it is waiting, not after a fixed delay."""
    from tests.watcher.e2e import published_registry

    port = free_port()
    cfg = config(LocalRegistry(enabled=True), image("app", "org/app"))
    started = contextlib.ExitStack()
    logged: list[str] = []

    def log(line: str) -> None:
        logged.append(line)
        if line.startswith(f"waiting for 127.0.0.1:{port} to answer"):
            started.enter_context(running_registry(tmp_path / "late", port=port))

    with started, published_registry(testenv, f"127.0.0.1:{port}"):
        endpoint = ensure_registry(
            cfg, context=testenv.context, namespace=None, timeout=60, log=log
        )
        endpoint.close()
    assert endpoint.reach == "kep-1755" and endpoint.push_host == f"127.0.0.1:{port}"
    assert any(line.startswith(f"127.0.0.1:{port} answers after ") for line in logged), logged


def test_node_port_answering_on_localhost_is_used(
    testenv: Any, namespace: str, own_registry: None
) -> None:
    """What a kind or minikube cluster gives: the node port answers on this machine
    (the registry pod on a real node, through kube-proxy: scripts/testenv ``nodes``)."""
    cfg = config(LocalRegistry(localbuild=True), image("app", "org/app"))
    first = ensure_registry(
        cfg, context=testenv.context, namespace=namespace, timeout=90, require_reach=False
    )
    first.close()
    assert first.node_port is not None
    # kube-proxy programs the node port a moment after the pod is Ready; once it
    # answers here, devreg takes it (no port-forward).
    wait_for(
        lambda: answers_v2(f"localhost:{first.node_port}") is None,
        timeout=60,
        what="the node port to answer on localhost",
    )
    endpoint = ensure_registry(cfg, context=testenv.context, namespace=namespace, timeout=90)
    try:
        assert endpoint.reach == "localhost"
        assert endpoint.push_host == endpoint.host == f"localhost:{first.node_port}"
    finally:
        endpoint.close()
    info = status_info(config=cfg, context=testenv.context, namespace=namespace)
    assert info["deployed"] and info["pod_ready"] and info["answers"]
    assert info["workload_kind"] == "Deployment"
    assert info["node_port"] == first.node_port
    assert info["paths"] == {"app": "local-registry-if-refused"}
    json.dumps(info)  # JSON-able
    lines = format_status(info)
    assert lines[0] == f"registry: localhost:{first.node_port} answers"
    assert f"Deployment {namespace}/registry" in lines[1] and "Ready" in lines[1]


def test_status_when_nothing_is_deployed(testenv: Any, namespace: str, own_registry: None) -> None:
    cfg = config(LocalRegistry(), image("app", "org/app"))
    info = status_info(config=cfg, context=testenv.context, namespace=namespace)
    assert not info["deployed"] and not info["answers"]
    assert format_status(info) == [
        f"registry: not deployed in {namespace}/registry (context {testenv.context}); "
        "`devreg up` deploys it"
    ]


def _kubeconfig_with_server(testenv: Any, tmp_path: Path, server: str) -> Path:
    doc = yaml.safe_load(Path(testenv.kubeconfig).read_text())
    for cluster in doc["clusters"]:
        cluster["cluster"]["server"] = server
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    "mode", [pytest.param("refused", id="refused"), pytest.param("silent", id="silent")]
)
def test_api_server_unreachable(
    testenv: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    with socket.socket() as silent:
        if mode == "silent":
            # Accepts TCP (the backlog) and never answers the TLS handshake.
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            port = silent.getsockname()[1]
        else:
            port = free_port()
        server = f"https://127.0.0.1:{port}"
        monkeypatch.setenv("KUBECONFIG", str(_kubeconfig_with_server(testenv, tmp_path, server)))
        cfg = config(LocalRegistry(), image("app", "org/app"))
        started = time.monotonic()
        with pytest.raises(FatalError) as e:
            ensure_registry(cfg, context=testenv.context, namespace="x", timeout=1.5)
        took = time.monotonic() - started
    assert f"cannot reach the Kubernetes API server {server}" in str(e.value)
    assert ("connection refused" if mode == "refused" else "no answer within 1.5 s") in str(e.value)
    assert took < 5, took


def test_unresolved_setting_is_refused_before_any_request(testenv: Any) -> None:
    cfg = config(replace(LocalRegistry(), unresolved=("localRegistry.port",)), image("a", "a"))
    with pytest.raises(FatalError, match="localRegistry.port: the expression could not be"):
        ensure_registry(cfg, context="no-such-context", namespace=None, timeout=5)


def test_bad_namespace_flag_is_a_usage_error(testenv: Any) -> None:
    cfg = config(LocalRegistry(), image("a", "a"))
    with pytest.raises(FatalError, match="--namespace 'Team_A' is not a namespace name") as e:
        ensure_registry(cfg, context=testenv.context, namespace="Team_A", timeout=5)
    assert e.value.exit_code == 2
