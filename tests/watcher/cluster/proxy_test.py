"""Proxy settings, end to end through a real forward proxy (tinyproxy, part
``proxy`` of the test environment): the API server (devreg's client, the
official client's REST calls and its port-forward websocket), the registry
client and the push check. The proxy's log says which requests went through
it; NO_PROXY'd ones must not be there.

devreg never sends loopback traffic to a proxy (as Go's clients), so the
servers are reached on a non-loopback address of this machine: the API server
listens on all addresses (its certificate names ``localhost``, hence
``tls-server-name``) and the registry is started on that address."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hookpkg.errors import FatalError
from tests.watcher.proxies import TinyProxy, local_address, running_tinyproxy
from tests.watcher.registries import free_port, registry_bin, wait_answering
from watcher.cluster import registryhttp
from watcher.cluster.kube import Kube, load_context, official_client
from watcher.cluster.portforward import OpenError, PodPortOpener
from watcher.cluster.pushcheck import PushChecker

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def proxy(tinyproxy: str, tmp_path: Path) -> Iterator[TinyProxy]:
    with running_tinyproxy(tinyproxy, tmp_path / "proxy") as p:
        yield p


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def address() -> str:
    return local_address()


def remote_kubeconfig(
    testenv: Any, tmp: Path, address: str, proxy_url: str | None = None
) -> tuple[Path, str]:
    """A kubeconfig for the test API server at ``address`` (not loopback):
    its file and the server's host:port."""
    ctx = load_context(testenv.context, [Path(testenv.kubeconfig)])
    port = ctx.server.rsplit(":", 1)[1]
    cluster: dict[str, Any] = {**ctx.cluster, "server": f"https://{address}:{port}"}
    cluster["tls-server-name"] = "localhost"
    for key in ("certificate-authority",):
        if key in cluster and not Path(cluster[key]).is_absolute():
            cluster[key] = str(ctx.cluster_dir / cluster[key])
    if proxy_url:
        cluster["proxy-url"] = proxy_url
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "remote",
        "contexts": [{"name": "remote", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": dict(ctx.user)}],
    }
    path = tmp / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path, f"{address}:{port}"


def namespaces(kubeconfig: Path) -> list[str]:
    with Kube("remote", kubeconfig=[kubeconfig]) as kube:
        return [n["metadata"]["name"] for n in kube.list("Namespace", None)]


@pytest.mark.testenv
def test_api_server_through_https_proxy(
    testenv: Any, proxy: TinyProxy, clean_env: pytest.MonkeyPatch, tmp_path: Path, address: str
) -> None:
    kubeconfig, hostport = remote_kubeconfig(testenv, tmp_path, address)
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    assert "default" in namespaces(kubeconfig)
    assert ("CONNECT", hostport) in proxy.requests()


@pytest.mark.testenv
@pytest.mark.parametrize(
    "no_proxy",
    [
        pytest.param("{ip}", id="ip"),
        pytest.param("{ip}:{port}", id="ip-port"),
        pytest.param("{net}.0/24", id="cidr"),
        pytest.param("example.com,*", id="star"),
    ],
)
def test_no_proxy_keeps_the_api_server_direct(
    testenv: Any,
    proxy: TinyProxy,
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    address: str,
    no_proxy: str,
) -> None:
    kubeconfig, hostport = remote_kubeconfig(testenv, tmp_path, address)
    port = hostport.rsplit(":", 1)[1]
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    clean_env.setenv(
        "NO_PROXY", no_proxy.format(ip=address, port=port, net=address.rsplit(".", 1)[0])
    )
    assert "default" in namespaces(kubeconfig)
    assert proxy.requests() == []


@pytest.mark.testenv
def test_no_proxy_for_another_port_still_proxies(
    testenv: Any, proxy: TinyProxy, clean_env: pytest.MonkeyPatch, tmp_path: Path, address: str
) -> None:
    kubeconfig, hostport = remote_kubeconfig(testenv, tmp_path, address)
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    clean_env.setenv("NO_PROXY", f"{address}:1")
    assert "default" in namespaces(kubeconfig)
    assert ("CONNECT", hostport) in proxy.requests()


@pytest.mark.testenv
def test_kubeconfig_proxy_url_wins(
    testenv: Any, proxy: TinyProxy, clean_env: pytest.MonkeyPatch, tmp_path: Path, address: str
) -> None:
    """As in kubectl: a cluster's proxy-url is used whatever NO_PROXY says."""
    kubeconfig, hostport = remote_kubeconfig(testenv, tmp_path, address, proxy_url=proxy.url)
    clean_env.setenv("NO_PROXY", "*")
    assert "default" in namespaces(kubeconfig)
    assert ("CONNECT", hostport) in proxy.requests()


@pytest.mark.testenv
def test_a_dead_proxy_is_named(
    testenv: Any, clean_env: pytest.MonkeyPatch, tmp_path: Path, address: str
) -> None:
    kubeconfig, _ = remote_kubeconfig(testenv, tmp_path, address)
    dead = free_port()
    clean_env.setenv("HTTPS_PROXY", f"127.0.0.1:{dead}")
    with pytest.raises(FatalError, match=rf"through proxy 127.0.0.1:{dead} \(from HTTPS_PROXY\)"):
        namespaces(kubeconfig)


@pytest.mark.testenv
@pytest.mark.parametrize("proxied", [True, False], ids=["proxied", "no-proxy"])
def test_streams_and_the_official_client_follow_the_same_settings(
    testenv: Any,
    proxy: TinyProxy,
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    address: str,
    proxied: bool,
) -> None:
    """The port-forward websocket and the official client's REST calls go
    through the proxy devreg chose, and not through it when NO_PROXY says so
    (the websocket library would otherwise read HTTPS_PROXY by itself)."""
    from kubernetes import client

    kubeconfig, hostport = remote_kubeconfig(testenv, tmp_path, address)
    clean_env.setenv("KUBECONFIG", str(kubeconfig))
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    if not proxied:
        # With a port: the websocket library's own NO_PROXY reading would
        # not match it and would take the proxy.
        clean_env.setenv("NO_PROXY", hostport)
    official = official_client("remote")
    try:
        names = [
            n.metadata.name for n in client.CoreV1Api(official.api_client).list_namespace().items
        ]
    finally:
        official.api_client.close()
    assert "default" in names
    rest_requests = proxy.requests()
    assert (("CONNECT", hostport) in rest_requests) is proxied

    opener = PodPortOpener(
        context="remote", namespace="default", find_pod=lambda: "no-such-pod", port=5000
    )
    try:
        # The API server answers the handshake (the pod does not exist): the
        # stream reached it, through the proxy or not.
        with pytest.raises(OpenError, match="no-such-pod"):
            opener()
    finally:
        opener.close()
    stream_requests = proxy.requests()[len(rest_requests) :]
    assert (("CONNECT", hostport) in stream_requests) is proxied, stream_requests
    if not proxied:
        assert proxy.requests() == []


@pytest.fixture
def remote_registry(tmp_path: Path, address: str) -> Iterator[str]:
    """A plain-HTTP registry on ``address`` (not loopback)."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}\n"
        f'http: {{addr: "{address}:{port}"}}\n'
    )
    log = (tmp_path / "registry.log").open("wb")
    proc = subprocess.Popen([registry_bin(), "serve", str(config)], stdout=log, stderr=log)
    try:
        wait_answering(address, port)
        yield f"{address}:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.mark.testenv
def test_registry_client_through_http_proxy(
    proxy: TinyProxy, clean_env: pytest.MonkeyPatch, remote_registry: str
) -> None:
    clean_env.setenv("HTTP_PROXY", proxy.url)
    assert registryhttp.answers_v2(remote_registry) is None
    assert registryhttp.manifest_present(remote_registry, "team/app", "v1", accept="*/*") is False
    assert proxy.requests() == [
        ("GET", f"http://{remote_registry}/v2/"),
        ("HEAD", f"http://{remote_registry}/v2/team/app/manifests/v1"),
    ]
    clean_env.setenv("NO_PROXY", remote_registry.rsplit(".", 1)[0] + ".0/24")
    assert registryhttp.answers_v2(remote_registry) is None
    assert len(proxy.requests()) == 2  # the NO_PROXY'd one went direct


@pytest.mark.testenv
def test_loopback_registries_never_use_the_proxy(
    proxy: TinyProxy, clean_env: pytest.MonkeyPatch, testenv: Any
) -> None:
    clean_env.setenv("HTTP_PROXY", proxy.url)
    port = testenv.registry.rsplit(":", 1)[1]
    assert registryhttp.answers_v2(f"localhost:{port}") is None
    assert registryhttp.answers_v2(f"127.0.0.1:{port}") is None
    assert proxy.requests() == []


@pytest.mark.testenv
def test_push_check_through_the_proxy(
    proxy: TinyProxy, remote_registry: str, tmp_path: Path
) -> None:
    """The push check behind a proxy: it used to say "refused" (and send the
    image to the local registry); through the proxy, the registry allows it."""
    env = {
        "HTTPS_PROXY": proxy.url,
        "HTTP_PROXY": proxy.url,
        "DOCKER_CONFIG": str(tmp_path / "docker"),
    }
    check = PushChecker(env=env).check(f"{remote_registry}/team/app")
    assert check.allowed, check.reason
    assert check.scheme == "http"
    requests = proxy.requests()
    assert ("CONNECT", remote_registry) in requests  # HTTPS first, as docker does
    assert ("POST", f"http://{remote_registry}/v2/team/app/blobs/uploads/") in requests

    direct = PushChecker(env={**env, "NO_PROXY": remote_registry}).check(
        f"{remote_registry}/team/other"
    )
    assert direct.allowed, direct.reason
    assert not [r for r in proxy.requests() if "team/other" in r[1]]
