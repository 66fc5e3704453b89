"""Exec credential plugins against the real API server: the plugin is a real
script that counts its runs, and the tokens it prints are real ServiceAccount
tokens.

How a token is made to stop being accepted: a token from the TokenRequest API
bound to a Secret (``boundObjectRef``) is valid only while that Secret exists,
so deleting the Secret gives a real 401 at once, without waiting for an expiry
(TokenRequest's ``expirationSeconds`` cannot go below 600 s, and the test API
server's flags are shared by every test). The API server caches successful
token reviews for up to 10 s (``TokenSuccessCacheTTL``), so after deleting the
Secret the test waits until the old token is refused by a plain request of its
own before asking devreg.

``expirationTimestamp`` is the plugin's word, not the server's: the script
prints what the test wrote in its ``expiry`` file (a time already past, or far
ahead), which is how kubectl decides to run a plugin again."""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import ssl
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from watcher.cluster.kube import Kube, exec_credentials, load_context
from watcher.cluster.portforward import OpenError, PodPortOpener

PLUGIN = """#!/bin/sh
d=$(dirname "$0")
echo run >> "$d/runs"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
printf '"status":{"token":"%s","expirationTimestamp":"%s"}}' "$(cat "$d/token")" "$(cat "$d/expiry")"
"""
PAST = "2000-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"


@dataclass
class ExecSetup:
    dir: Path
    kubeconfig: Path
    namespace: str
    core: Any  # the admin's CoreV1Api, to make and revoke tokens
    server: str
    ca: bytes

    @property
    def runs(self) -> int:
        path = self.dir / "runs"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def new_token(self) -> tuple[str, str]:
        """A token bound to a new Secret; the plugin prints it from now on.
        Returns (token, secret name)."""
        from kubernetes import client

        name = f"bound-{secrets.token_hex(3)}"
        secret = self.core.create_namespaced_secret(
            self.namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name))
        )
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=3600,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Secret", name=name, uid=secret.metadata.uid
                ),
            )
        )
        token = self.core.create_namespaced_service_account_token(
            "devreg-exec", self.namespace, request
        ).status.token
        (self.dir / "token").write_text(token)
        return str(token), name

    def status_with(self, token: str) -> int:
        """What the API server answers a token, asked directly."""
        ctx = ssl.create_default_context(cadata=self.ca.decode())
        host, port = self.server.removeprefix("https://").rsplit(":", 1)
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
        try:
            conn.request(
                "GET",
                f"/api/v1/namespaces/{self.namespace}/pods",
                headers={"Authorization": f"Bearer {token}"},
            )
            return conn.getresponse().status
        finally:
            conn.close()

    def revoke(self, token: str, secret: str) -> None:
        """Delete the token's Secret and wait until the API server refuses it."""
        self.core.delete_namespaced_secret(secret, self.namespace)
        deadline = time.monotonic() + 60
        while self.status_with(token) != 401:
            assert time.monotonic() < deadline, "the revoked token is still accepted after 60 s"
            time.sleep(0.2)


@pytest.fixture
def exec_setup(testenv: Any, kube_api_client: Any, tmp_path: Path) -> Iterator[ExecSetup]:
    from kubernetes import client

    core = client.CoreV1Api(kube_api_client)
    rbac = client.RbacAuthorizationV1Api(kube_api_client)
    ns = f"devreg-exec-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        core.create_namespaced_service_account(
            ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="devreg-exec"))
        )
        rbac.create_namespaced_role_binding(
            ns,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="devreg-exec"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="edit"
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name="devreg-exec", namespace=ns)
                ],
            ),
        )
        admin = load_context(testenv.context, [Path(testenv.kubeconfig)])
        ca_data = admin.cluster.get("certificate-authority-data")
        ca = (
            base64.b64decode(ca_data)
            if ca_data
            else (admin.cluster_dir / admin.cluster["certificate-authority"]).read_bytes()
        )
        plugin = tmp_path / "plugin"
        plugin.write_text(PLUGIN)
        plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
        (tmp_path / "expiry").write_text(FUTURE)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "exec",
                    "contexts": [{"name": "exec", "context": {"cluster": "c", "user": "sa"}}],
                    "clusters": [
                        {
                            "name": "c",
                            "cluster": {
                                "server": admin.server,
                                "certificate-authority-data": base64.b64encode(ca).decode(),
                            },
                        }
                    ],
                    "users": [
                        {
                            "name": "sa",
                            "user": {
                                "exec": {
                                    "apiVersion": "client.authentication.k8s.io/v1",
                                    "command": "./plugin",  # relative to the kubeconfig
                                    "interactiveMode": "Never",
                                }
                            },
                        }
                    ],
                }
            )
        )
        setup = ExecSetup(tmp_path, kubeconfig, ns, core, admin.server, ca)
        yield setup
    finally:
        core.delete_namespace(ns)


def pods(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    return kube.list("Pod", namespace)


@pytest.mark.testenv
def test_an_expired_credential_runs_the_plugin_again(exec_setup: ExecSetup) -> None:
    exec_setup.new_token()
    (exec_setup.dir / "expiry").write_text(PAST)
    with Kube("exec", kubeconfig=[exec_setup.kubeconfig]) as kube:
        assert exec_setup.runs == 1
        assert pods(kube, exec_setup.namespace) == []
        assert exec_setup.runs == 2  # the first answer had already expired
        pods(kube, exec_setup.namespace)
        assert exec_setup.runs == 3
        (exec_setup.dir / "expiry").write_text(FUTURE)
        pods(kube, exec_setup.namespace)
        assert exec_setup.runs == 4  # the cached one was still the expired one
        for _ in range(3):
            pods(kube, exec_setup.namespace)
        assert exec_setup.runs == 4


@pytest.mark.testenv
def test_a_401_runs_the_plugin_once_and_the_streams_share_the_credentials(
    exec_setup: ExecSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(exec_setup.kubeconfig))
    first, first_secret = exec_setup.new_token()
    with Kube("exec") as kube:
        pods(kube, exec_setup.namespace)
        assert exec_setup.runs == 1

        # The API client's token is revoked; the plugin now prints a new one.
        exec_setup.new_token()
        exec_setup.revoke(first, first_secret)
        assert pods(kube, exec_setup.namespace) == []  # 401, one refresh, the same request again
        assert exec_setup.runs == 2

        # A second client of the same user (the port-forward's official client)
        # takes the cached credentials: the plugin does not run for it.
        opener = PodPortOpener(
            context="exec", namespace=exec_setup.namespace, find_pod=lambda: "nope", port=5000
        )
        try:
            with pytest.raises(OpenError, match="not found"):
                opener()  # authenticated: the API server looked for the pod
            assert exec_setup.runs == 2

            # Revoked again: the stream's handshake gets the 401 and refreshes once...
            second = (exec_setup.dir / "token").read_text()
            second_secret = _secret_of(exec_setup, second)
            exec_setup.new_token()
            exec_setup.revoke(second, second_secret)
            with pytest.raises(OpenError, match="not found"):
                opener()
            assert exec_setup.runs == 3
        finally:
            opener.close()
        # ... and the API client uses what the stream's refresh got.
        pods(kube, exec_setup.namespace)
        assert exec_setup.runs == 3
    ctx = load_context("exec")
    cache = exec_credentials(ctx)
    assert cache is not None and cache.runs == 3  # one cache for the user in this process


def _secret_of(setup: ExecSetup, token: str) -> str:
    """The Secret a bound token names (its claims say so)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["kubernetes.io"]["secret"]["name"])
