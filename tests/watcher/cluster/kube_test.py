"""Kubeconfig reading and credentials, at the boundary where no cluster is
needed; requests and API errors against the real API server are in
registry_deploy_test.py and registry_test.py."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from hookpkg.errors import FatalError
from watcher.cluster.kube import Action, Kube, _user_auth, load_context, resource_path


def kubeconfig(tmp_path: Path, doc: dict[str, Any], name: str = "config") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


BASE = {
    "current-context": "dev",
    "contexts": [
        {"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "team"}},
        {"name": "bare", "context": {"cluster": "c", "user": "u"}},
        {"name": "dangling", "context": {"cluster": "missing", "user": "u"}},
    ],
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443/"}}],
    "users": [{"name": "u", "user": {"token": "abc"}}],
}


@pytest.mark.parametrize(
    ("context", "server", "namespace"),
    [
        pytest.param(None, "https://127.0.0.1:6443", "team", id="current"),
        pytest.param("bare", "https://127.0.0.1:6443", "default", id="no-namespace"),
    ],
)
def test_load_context(tmp_path: Path, context: str | None, server: str, namespace: str) -> None:
    ctx = load_context(context, [kubeconfig(tmp_path, BASE)])
    assert (ctx.server, ctx.namespace, ctx.user_name) == (server, namespace, "u")


@pytest.mark.parametrize(
    ("context", "doc", "message"),
    [
        pytest.param("nope", BASE, "context 'nope' is not in the kubeconfig", id="unknown"),
        pytest.param("dangling", BASE, "names cluster 'missing'", id="no-cluster"),
        pytest.param(None, {**BASE, "current-context": None}, "has no current context", id="none"),
    ],
)
def test_load_context_errors(
    tmp_path: Path, context: str | None, doc: dict[str, Any], message: str
) -> None:
    with pytest.raises(FatalError, match=message):
        load_context(context, [kubeconfig(tmp_path, doc)])


def test_no_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(FatalError, match="no kubeconfig found"):
        load_context(None, [tmp_path / "missing"])


def test_first_file_wins_and_relative_paths_follow_their_file(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "token").write_text("from-file\n")
    first = kubeconfig(tmp_path, {"current-context": "dev", "contexts": BASE["contexts"]}, "a")
    second = kubeconfig(
        tmp_path / "b",
        {
            "current-context": "other",
            "clusters": BASE["clusters"],
            "users": [{"name": "u", "user": {"tokenFile": "token"}}],
        },
    )
    ctx = load_context(None, [first, second])
    assert ctx.name == "dev"
    assert _user_auth(ctx).headers == {"Authorization": "Bearer from-file"}


def test_exec_plugin_token(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        "#!/bin/sh\n"
        'echo "$KUBERNETES_EXEC_INFO" > "$(dirname "$0")/exec-info.json"\n'
        'printf \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
        '"status":{"token":"%s"}}\' "$TOKEN_FROM_ENV"\n'
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    doc = {
        **BASE,
        "users": [
            {
                "name": "u",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": "./plugin.sh",
                        "env": [{"name": "TOKEN_FROM_ENV", "value": "t0k"}],
                    }
                },
            }
        ],
    }
    ctx = load_context(None, [kubeconfig(tmp_path, doc)])
    assert _user_auth(ctx).headers == {"Authorization": "Bearer t0k"}
    info = json.loads((tmp_path / "exec-info.json").read_text())
    assert info["kind"] == "ExecCredential" and info["spec"] == {"interactive": False}


def test_exec_plugin_failure_is_explained(tmp_path: Path) -> None:
    doc = {**BASE, "users": [{"name": "u", "user": {"exec": {"command": "false"}}}]}
    ctx = load_context(None, [kubeconfig(tmp_path, doc)])
    with pytest.raises(FatalError, match="the credential plugin 'false' failed"):
        _user_auth(ctx)


def test_basic_auth(tmp_path: Path) -> None:
    doc = {**BASE, "users": [{"name": "u", "user": {"username": "a", "password": "b"}}]}
    ctx = load_context(None, [kubeconfig(tmp_path, doc)])
    assert _user_auth(ctx).headers == {
        "Authorization": "Basic " + base64.b64encode(b"a:b").decode()
    }


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "path"),
    [
        pytest.param("Namespace", None, "x", "/api/v1/namespaces/x", id="namespace"),
        pytest.param(
            "Deployment", "n", "r", "/apis/apps/v1/namespaces/n/deployments/r", id="deployment"
        ),
        pytest.param("Pod", "n", None, "/api/v1/namespaces/n/pods", id="collection"),
    ],
)
def test_resource_path(kind: str, namespace: str | None, name: str | None, path: str) -> None:
    assert resource_path(kind, namespace, name) == path


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(
            403,
            {
                "reason": "Forbidden",
                "message": 'deployments.apps "registry" is forbidden: User "me" cannot patch '
                'resource "deployments" in API group "apps" in the namespace "ns"',
            },
            "context 'dev' (user 'u') may not patch deployments.apps in namespace 'ns'",
            id="rbac",
        ),
        pytest.param(
            403,
            {
                "message": "unable to create new content in namespace ns because it is being terminated"
            },
            "namespace 'ns' is being deleted",
            id="terminating",
        ),
        pytest.param(401, {}, "rejected the credentials of context 'dev'", id="unauthorized"),
        pytest.param(
            500,
            {"reason": "InternalError", "message": "boom"},
            "patch deployments.apps 'registry' in namespace 'ns' failed",
            id="other",
        ),
    ],
)
def test_error_messages(tmp_path: Path, status: int, body: dict[str, str], expected: str) -> None:
    kube = Kube(kubeconfig=[kubeconfig(tmp_path, BASE)])
    error = kube.error(Action("patch", "Deployment", "ns", "registry"), status, body)
    assert expected in str(error)
    assert error.status == status


def test_a_kept_alive_connection_the_server_dropped_is_retried(tmp_path: Path) -> None:
    """A server that closes every connection after one answer without saying
    so (as a restarted API server or a proxy's idle timeout does)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps({"kind": "ConfigMap", "metadata": {"name": "x"}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        doc = json.loads(json.dumps(BASE))
        doc["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{httpd.server_address[1]}"
        with Kube(kubeconfig=[kubeconfig(tmp_path, doc)]) as kube:
            for _ in range(3):
                got = kube.get("ConfigMap", "ns", "x")
                assert got is not None and got["metadata"]["name"] == "x"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
