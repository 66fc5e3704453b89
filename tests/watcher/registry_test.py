"""The facade: path per image (with the real push check), ensure_registry
against the real API server (deployed or KEP-1755), status, and the faults
of an unreachable API server."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from hookpkg.config import Config, Image, LocalRegistry
from hookpkg.delivery import Cluster
from hookpkg.errors import FatalError
from tests.watcher.registries import free_port, running_registry
from watcher import kep1755
from watcher.kube import Kube
from watcher.pushcheck import PushChecker
from watcher.registry import ensure_registry, format_status, plan_delivery, status_info


def image(key: str, ref: str, builder: str = "docker") -> Image:
    return Image(
        key=key,
        image=ref,
        tags=(),
        dockerfile=Path("Dockerfile"),
        context=Path("."),
        build_args={},
        target=None,
        builder=builder,  # type: ignore[arg-type]
        file="devspace.yaml",
        line=1,
        col=1,
    )


def config(registry: LocalRegistry, *images: Image) -> Config:
    return Config(
        path=Path("devspace.yaml"),
        directory=Path("."),
        version="v2beta1",
        local_registry=registry,
        has_local_registry=True,
        images={i.key: i for i in images},
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
    duration. It is cluster-wide: kept as short as the test."""
    with Kube(testenv.context) as kube:
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


def test_ensure_registry_deploys_and_reports_why_it_cannot_reach(
    testenv: Any, namespace: str
) -> None:
    cfg = config(LocalRegistry(localbuild=True), image("app", "org/app"))
    endpoint = ensure_registry(
        cfg, context=testenv.context, namespace=namespace, timeout=60, require_reach=False
    )
    try:
        assert endpoint.source == "deployed"
        assert endpoint.host == f"localhost:{endpoint.node_port}"
        assert (endpoint.namespace, endpoint.name, endpoint.workload_kind) == (
            namespace,
            "registry",
            "Deployment",
        )
        # No kubelet here: localhost:<nodePort> is closed and the API server
        # cannot open the pod's port. Both reasons are in the message.
        assert endpoint.reach == "unreachable"
        assert endpoint.reach_error is not None
        assert f"localhost:{endpoint.node_port}: connection refused" in endpoint.reach_error
        assert "error dialing backend" in endpoint.reach_error
    finally:
        endpoint.close()
    with pytest.raises(FatalError, match="cannot be reached from this machine"):
        ensure_registry(cfg, context=testenv.context, namespace=namespace, timeout=60).close()


def test_node_port_answering_on_localhost_is_used(
    testenv: Any, namespace: str, tmp_path: Path
) -> None:
    """What a kind or minikube cluster gives: the node port answers on this
    machine. A real registry process stands in for the node's port."""
    cfg = config(LocalRegistry(localbuild=True), image("app", "org/app"))
    first = ensure_registry(
        cfg, context=testenv.context, namespace=namespace, timeout=60, require_reach=False
    )
    first.close()
    assert first.node_port is not None
    with running_registry(tmp_path / "node", port=first.node_port):
        endpoint = ensure_registry(cfg, context=testenv.context, namespace=namespace, timeout=60)
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


def test_status_when_nothing_is_deployed(testenv: Any, namespace: str) -> None:
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
