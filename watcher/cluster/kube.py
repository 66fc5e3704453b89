"""A small Kubernetes API client for one kubeconfig context.

Why not the official client for every call: importing ``kubernetes`` costs
about 0.5 s here (its models and auth plugins), more than ``kubectl get``
takes in total, and ``devreg up`` runs at every watcher start. The calls
devreg makes (get, list, server-side apply, delete) are plain JSON over
HTTPS, so they go through :mod:`watcher.cluster.httpconn` (the standard
library's ``http.client``) on one kept-alive connection. The official client
is still used where it earns its cost: the port-forward stream
(:mod:`watcher.cluster.portforward`) and kubeconfig ``auth-provider`` entries
(legacy OIDC/GCP plugins), whose token logic it owns.

Every API error becomes :class:`ApiError`, a :class:`~hookpkg.errors.FatalError`
whose message names the verb, the resource, the namespace, the context and
the server, and says what to do.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from hookpkg.delivery import KubeconfigError, kubeconfig_paths, merge_kubeconfig
from hookpkg.errors import FatalError
from watcher import console
from watcher.cluster.httpconn import Connection, HeaderError, HTTPError, Response, network_words
from watcher.cluster.netproxy import Proxy, parse_proxy, proxy_for

FIELD_MANAGER = "devreg"
DEFAULT_TIMEOUT = 10.0
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"

# kind -> (API prefix, plural, namespaced)
_RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Node": ("/api/v1", "nodes", False),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Service": ("/api/v1", "services", True),
    "Pod": ("/api/v1", "pods", True),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims", True),
    "Event": ("/api/v1", "events", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True),
    "ReplicaSet": ("/apis/apps/v1", "replicasets", True),
}


def resource_path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    """``/apis/apps/v1/namespaces/NS/deployments/NAME`` (name optional: a collection)."""
    prefix, plural, namespaced = _RESOURCES[kind]
    path = prefix
    if namespaced:
        if namespace is None:
            raise ValueError(f"{kind} is namespaced")
        path += f"/namespaces/{urllib.parse.quote(namespace, safe='')}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{urllib.parse.quote(name, safe='')}"
    return path


def resource_name(kind: str) -> str:
    """What RBAC calls it: ``deployments.apps``, ``services``."""
    prefix, plural, _ = _RESOURCES[kind]
    group = prefix.split("/")[2] if prefix.startswith("/apis/") else ""
    return f"{plural}.{group}" if group else plural


class Action(NamedTuple):
    """What a request does, for error messages: ``patch deployments.apps registry``."""

    verb: str
    kind: str
    namespace: str | None
    name: str | None = None

    def describe(self) -> str:
        what = resource_name(self.kind)
        if self.name:
            what += f" {self.name!r}"
        if self.namespace:
            what += f" in namespace {self.namespace!r}"
        return f"{self.verb} {what}"


class ApiError(FatalError):
    """An answer of the API server other than success, explained."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        reason: str = "",
        server_message: str = "",
        causes: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.server_message = server_message
        self.causes = list(causes)


# --- kubeconfig -----------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeContext:
    """One context of the merged kubeconfig, with its cluster and user entries.

    ``*_dir`` is the directory of the file that defined the entry: relative
    file names in it (``certificate-authority: ca.crt``) are relative to that
    file, as kubectl reads them.
    """

    name: str
    server: str
    namespace: str  # the context's namespace, else "default"
    user_name: str
    cluster: Mapping[str, Any]
    user: Mapping[str, Any]
    cluster_dir: Path
    user_dir: Path
    files: tuple[Path, ...]


def official_client_config_file() -> str:
    """The kubeconfig files for the official client (streams, auth providers),
    named here rather than left to it: it reads ``KUBECONFIG`` once, when it is
    imported, and devreg's reader reads it at each use (``--kubeconfig`` sets it
    for the run). Both merge the same list, ``:``-separated as in ``KUBECONFIG``."""
    return os.pathsep.join(str(p) for p in kubeconfig_paths())


def load_context(context: str | None = None, paths: Sequence[Path] | None = None) -> KubeContext:
    """Find ``context`` (or the current one) in the merged kubeconfig files,
    first file wins for each name, as kubectl merges them."""
    paths = list(paths) if paths is not None else kubeconfig_paths()
    try:
        merged = merge_kubeconfig(paths, strict=True)
    except KubeconfigError as e:
        raise FatalError(str(e), exit_code=2) from None
    current, found = merged.current, merged.files
    entries = {"contexts": merged.contexts, "clusters": merged.clusters, "users": merged.users}
    where = ", ".join(str(p) for p in paths) or "(none)"
    if not found:
        raise FatalError(
            f"no kubeconfig found ({where}): devreg needs a cluster; set KUBECONFIG or "
            "create ~/.kube/config (for example with `kind create cluster`)"
        )
    name = context or current
    if not name:
        raise FatalError(
            f"the kubeconfig ({where}) has no current context: pass --context NAME or run "
            "`kubectl config use-context NAME`"
        )
    if name not in entries["contexts"]:
        known = ", ".join(sorted(entries["contexts"])) or "none"
        raise FatalError(f"context {name!r} is not in the kubeconfig ({where}); contexts: {known}")
    ctx_entry, _ = entries["contexts"][name]
    ctx = ctx_entry.get("context") or {}
    cluster_name = ctx.get("cluster")
    if not isinstance(cluster_name, str) or cluster_name not in entries["clusters"]:
        raise FatalError(
            f"context {name!r} names cluster {cluster_name!r}, which the kubeconfig ({where}) "
            "does not define"
        )
    cluster_entry, cluster_dir = entries["clusters"][cluster_name]
    cluster = cluster_entry.get("cluster") or {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise FatalError(f"cluster {cluster_name!r} in the kubeconfig ({where}) has no server")
    user_name = ctx.get("user") or ""
    user_entry, user_dir = entries["users"].get(user_name, ({}, cluster_dir))
    return KubeContext(
        name=name,
        server=server.rstrip("/"),
        namespace=str(ctx.get("namespace") or "default"),
        user_name=str(user_name),
        cluster=cluster,
        user=user_entry.get("user") or {},
        cluster_dir=cluster_dir,
        user_dir=user_dir,
        files=tuple(found),
    )


def _file_or_data(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    """``key-data`` (base64) or ``key`` (a file, relative to the kubeconfig)."""
    data = entry.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    name = entry.get(key)
    if name:
        path = Path(os.path.expanduser(str(name)))
        try:
            return (path if path.is_absolute() else base / path).read_bytes()
        except OSError as e:
            raise FatalError(f"kubeconfig {key} {str(path)!r}: cannot read: {e.strerror}") from None
    return None


@dataclass
class _Auth:
    headers: dict[str, str] = field(default_factory=dict)
    cert: bytes | None = None
    key: bytes | None = None
    cert_files: tuple[str, str] | None = None  # from the official client's fallback


def _exec_credential(ctx: KubeContext) -> tuple[_Auth, datetime.datetime | None]:
    """Run the kubeconfig's ``exec`` plugin (EKS, GKE, OIDC login helpers):
    the credentials and when they expire (None: they do not say)."""
    spec = ctx.user["exec"]
    command = str(spec.get("command") or "")
    if "/" in command and not os.path.isabs(command):
        command = str(ctx.user_dir / command)
    env = dict(os.environ)
    for item in spec.get("env") or []:
        env[str(item.get("name"))] = str(item.get("value"))
    api_version = spec.get("apiVersion") or "client.authentication.k8s.io/v1"
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    )
    argv = [command, *[str(a) for a in spec.get("args") or []]]
    import subprocess  # only exec plugins need it

    try:
        proc = subprocess.run(
            argv, env=env, capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        hint = spec.get("installHint") or ""
        raise FatalError(
            f"context {ctx.name!r}: the credential plugin {command!r} did not run: {e}. {hint}"
        ) from None
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise FatalError(
            f"context {ctx.name!r}: the credential plugin {command!r} failed "
            f"(exit {proc.returncode}): {' / '.join(tail)}"
        )
    try:
        status = json.loads(proc.stdout).get("status") or {}
    except (ValueError, AttributeError):
        raise FatalError(
            f"context {ctx.name!r}: the credential plugin {command!r} printed no ExecCredential"
        ) from None
    auth = _Auth()
    if status.get("token"):
        auth.headers["Authorization"] = f"Bearer {status['token']}"
    if status.get("clientCertificateData") and status.get("clientKeyData"):
        auth.cert = str(status["clientCertificateData"]).encode()
        auth.key = str(status["clientKeyData"]).encode()
    expiry = None
    stamp = status.get("expirationTimestamp")
    if stamp:
        try:
            expiry = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            raise FatalError(
                f"context {ctx.name!r}: the credential plugin {command!r} printed "
                f"expirationTimestamp {stamp!r}, which is not an RFC 3339 time"
            ) from None
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=datetime.UTC)
    return auth, expiry


class ExecCredentials:
    """The credentials of one kubeconfig user's ``exec`` plugin, shared by
    every client in the process (the API client, the port-forward and exec
    streams), as kubectl keeps them: the plugin runs again when its
    ``expirationTimestamp`` has passed, or when the API server answered 401
    to them, and once per refresh however many clients asked."""

    def __init__(self, ctx: KubeContext) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self._auth: _Auth | None = None
        self._expiry: datetime.datetime | None = None
        self.runs = 0  # how many times the plugin ran (status, tests)

    def _run(self) -> _Auth:
        self._auth, self._expiry = _exec_credential(self._ctx)
        self.runs += 1
        return self._auth

    def current(self) -> _Auth:
        """The cached credentials; the plugin runs when there are none yet or
        they have expired."""
        with self._lock:
            now = datetime.datetime.now(datetime.UTC)
            if self._auth is None or (self._expiry is not None and now >= self._expiry):
                return self._run()
            return self._auth

    def rejected(self, auth: _Auth) -> _Auth:
        """The API server refused ``auth`` (401): new credentials, from one
        plugin run however many clients saw the 401 with the same ones."""
        with self._lock:
            if self._auth is auth or self._auth is None:
                return self._run()
            return self._auth


_EXEC_CACHES: dict[str, ExecCredentials] = {}
_EXEC_CACHES_LOCK = threading.Lock()


def exec_credentials(ctx: KubeContext) -> ExecCredentials | None:
    """The process's credential cache of ``ctx``'s user, None when the user
    has no ``exec`` plugin. One per user: the same name in the same
    kubeconfig files with the same plugin settings."""
    spec = ctx.user.get("exec")
    if not spec:
        return None
    key = json.dumps(
        [ctx.user_name, [str(f) for f in ctx.files], str(ctx.user_dir), spec],
        sort_keys=True,
        default=str,
    )
    with _EXEC_CACHES_LOCK:
        cache = _EXEC_CACHES.get(key)
        if cache is None:
            cache = _EXEC_CACHES[key] = ExecCredentials(ctx)
        return cache


def _official_client_auth(ctx: KubeContext) -> _Auth:
    """``auth-provider`` entries: let the official client run its plugin."""
    from kubernetes import client, config

    cfg = client.Configuration()
    load: Any = config.load_kube_config
    load(
        config_file=official_client_config_file(),
        context=ctx.name,
        client_configuration=cfg,
        persist_config=False,
    )
    auth = _Auth()
    token = cfg.get_api_key_with_prefix("authorization") if cfg.api_key else None
    if token:
        auth.headers["Authorization"] = str(token)
    if cfg.cert_file and cfg.key_file:
        auth.cert_files = (str(cfg.cert_file), str(cfg.key_file))
    return auth


def _user_auth(ctx: KubeContext, from_exec: _Auth | None = None) -> _Auth:
    """The credentials of ``ctx``'s user. ``from_exec``: what its ``exec``
    plugin gave (:class:`ExecCredentials`); it wins over static entries."""
    user = ctx.user
    if user.get("auth-provider"):
        return _official_client_auth(ctx)
    if from_exec is None and user.get("exec"):
        cache = exec_credentials(ctx)
        assert cache is not None
        from_exec = cache.current()
    auth = _Auth(dict(from_exec.headers), from_exec.cert, from_exec.key) if from_exec else _Auth()
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token_bytes = _file_or_data({"tokenFile": user["tokenFile"]}, "tokenFile", ctx.user_dir)
        token = (token_bytes or b"").decode().strip()
    if token and "Authorization" not in auth.headers:
        auth.headers["Authorization"] = f"Bearer {token}"
    if user.get("username") and user.get("password") and "Authorization" not in auth.headers:
        pair = f"{user['username']}:{user['password']}".encode()
        auth.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    cert = _file_or_data(user, "client-certificate", ctx.user_dir)
    key = _file_or_data(user, "client-key", ctx.user_dir)
    if cert and key:
        auth.cert, auth.key = cert, key
    return auth


def _ssl_context(ctx: KubeContext, auth: _Auth) -> ssl.SSLContext:
    cluster = ctx.cluster
    if cluster.get("insecure-skip-tls-verify"):
        sslctx = ssl.create_default_context()
        sslctx.check_hostname = False
        sslctx.verify_mode = ssl.CERT_NONE
    else:
        ca = _file_or_data(cluster, "certificate-authority", ctx.cluster_dir)
        sslctx = ssl.create_default_context(cadata=ca.decode() if ca else None)
    if auth.cert_files:
        sslctx.load_cert_chain(*auth.cert_files)
    elif auth.cert and auth.key:
        # load_cert_chain reads files only: a private temporary directory,
        # removed as soon as the key is loaded.
        import tempfile

        with tempfile.TemporaryDirectory(prefix="devreg-kube-") as tmp:
            cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            for path, data in ((cert_path, auth.cert), (key_path, auth.key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            sslctx.load_cert_chain(cert_path, key_path)
    return sslctx


def api_server_proxy(ctx: KubeContext) -> Proxy | None:
    """The proxy to the API server: the cluster's ``proxy-url`` (which wins,
    as in kubectl, ``NO_PROXY`` included), else ``HTTPS_PROXY``/``NO_PROXY``."""
    configured = ctx.cluster.get("proxy-url")
    if configured:
        where = ", ".join(str(f) for f in ctx.files)
        return parse_proxy(str(configured), f"proxy-url of context {ctx.name!r} in {where}")
    url = urllib.parse.urlsplit(ctx.server)
    default = 443 if url.scheme == "https" else 80
    return proxy_for(url.scheme, url.hostname or "", url.port or default)


def _apply_proxy(cfg: Any, proxy: Proxy | None) -> None:
    """Tell the official client's Configuration the proxy devreg decided on.

    Its websocket library (port-forward, exec) reads ``HTTPS_PROXY`` and
    ``NO_PROXY`` itself, with other rules (a ``host:port`` entry never
    matches), unless it is given a proxy host; the ``no_proxy`` it is given is
    looked at only then. So a direct connection is said as a placeholder
    proxy that ``no_proxy = *`` rules out (for the REST calls too: urllib3 is
    given no proxy then), and a proxied one with a ``no_proxy`` that matches
    nothing, so that neither library decides again."""
    if proxy is None:
        cfg.proxy = "http://no-proxy.devreg.invalid:9"  # never connected to: no_proxy is *
        cfg.no_proxy = "*"
        cfg.proxy_headers = None
    else:
        cfg.proxy = proxy.url()
        cfg.no_proxy = "no-proxy.devreg.invalid"
        cfg.proxy_headers = (
            {"proxy-authorization": proxy.authorization} if proxy.authorization else None
        )


class OfficialClient(NamedTuple):
    api_client: Any  # kubernetes.client.ApiClient
    credentials_rejected: Callable[[], bool]
    """Call after a 401: True when new credentials came (worth one more try)."""


def official_client(context: str | None = None) -> OfficialClient:
    """The official client for ``context``, for the streams (port-forward,
    exec): the same credentials as :class:`Kube` (one exec plugin cache per
    user, :class:`ExecCredentials`) and the same proxy. ``auth-provider``
    users keep the official client's own loading (it owns those plugins)."""
    from kubernetes import client, config

    ctx = load_context(context)
    if ctx.user.get("auth-provider"):
        new_client: Any = config.new_client_from_config
        api = new_client(config_file=official_client_config_file(), context=ctx.name)
        _apply_proxy(api.configuration, api_server_proxy(ctx))
        return OfficialClient(api, lambda: False)
    cache = exec_credentials(ctx)
    cfg: Any = client.Configuration()
    applied: list[_Auth | None] = [None]

    def apply(exec_auth: _Auth | None) -> None:
        auth = _user_auth(ctx, exec_auth)
        cluster = {k: v for k, v in ctx.cluster.items() if k != "certificate-authority"}
        ca = _file_or_data(ctx.cluster, "certificate-authority", ctx.cluster_dir)
        if ca:
            cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
        user: dict[str, str] = {}
        if auth.cert and auth.key:
            user["client-certificate-data"] = base64.b64encode(auth.cert).decode()
            user["client-key-data"] = base64.b64encode(auth.key).decode()
        doc = {
            "current-context": "devreg",
            "contexts": [{"name": "devreg", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "u", "user": user}],
        }
        load: Any = config.load_kube_config_from_dict
        load(doc, context="devreg", client_configuration=cfg, persist_config=False)
        if "Authorization" in auth.headers:
            cfg.api_key = {"BearerToken": auth.headers["Authorization"]}
        _apply_proxy(cfg, api_server_proxy(ctx))
        cfg.refresh_api_key_hook = refresh
        applied[0] = exec_auth

    def refresh(_: Any) -> None:
        if cache is not None:
            current = cache.current()
            if current is not applied[0]:
                apply(current)

    def rejected() -> bool:
        if cache is None or applied[0] is None:
            return False
        apply(cache.rejected(applied[0]))
        return True

    apply(cache.current() if cache is not None else None)
    return OfficialClient(client.ApiClient(cfg), rejected)


# --- the client ------------------------------------------------------------------------------

_RBAC = re.compile(
    r'cannot (?P<verb>[\w-]+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<namespace>[^"]+)")?'
)


class Kube:
    """Requests to the API server of one context, on one kept-alive connection."""

    def __init__(
        self,
        context: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        kubeconfig: Sequence[Path] | None = None,
    ) -> None:
        self.ctx = load_context(context, kubeconfig)
        self.timeout = timeout
        url = urllib.parse.urlsplit(self.ctx.server)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise FatalError(
                f"context {self.ctx.name!r}: server {self.ctx.server!r} is not an http(s) URL"
            )
        self._scheme = url.scheme
        self._host = url.hostname
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        self._proxy = api_server_proxy(self.ctx)
        auth_provider = bool(self.ctx.user.get("auth-provider"))
        self._exec = None if auth_provider else exec_credentials(self.ctx)
        self._exec_auth = self._exec.current() if self._exec is not None else None
        self._auth = _user_auth(self.ctx, self._exec_auth)
        self._sslctx = _ssl_context(self.ctx, self._auth) if url.scheme == "https" else None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    @property
    def context(self) -> str:
        return self.ctx.name

    @property
    def server(self) -> str:
        return self.ctx.server

    @property
    def namespace(self) -> str:
        """The context's namespace (``default`` when it names none)."""
        return self.ctx.namespace

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport --

    def _connection(self) -> Connection:
        if self._conn is None:
            default = 443 if self._scheme == "https" else 80
            self._conn = Connection(
                self._scheme,
                self._host,
                self._port or default,
                timeout=self.timeout,
                sslctx=self._sslctx,
                server_hostname=self.ctx.cluster.get("tls-server-name"),
                proxy=self._proxy,
            )
        return self._conn

    def _use_exec_auth(self, exec_auth: _Auth) -> None:
        """Switch to what the exec plugin gave now (a new client certificate
        needs a new TLS context, hence a new connection)."""
        if exec_auth is self._exec_auth:
            return
        old = self._auth
        self._exec_auth = exec_auth
        self._auth = _user_auth(self.ctx, exec_auth)
        if self._scheme == "https" and (old.cert, old.key) != (self._auth.cert, self._auth.key):
            self._sslctx = _ssl_context(self.ctx, self._auth)
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _unreachable(self, action: Action, error: BaseException) -> FatalError:
        why = network_words(error, self.timeout)
        through = f"through {self._proxy.describe()} " if self._proxy else ""
        return FatalError(
            f"cannot reach the Kubernetes API server {self.server} (context {self.context!r}) "
            f"{through}to {action.describe()}: {why}. Is the cluster running? "
            f"Check with `kubectl --context {self.context} cluster-info`."
        )

    def request(
        self,
        method: str,
        path: str,
        action: Action,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:
        """One request; returns (status, decoded JSON body) for any HTTP status.
        Network failures raise :class:`FatalError` naming the server."""
        status, raw = self._send(
            method, path, action, query=query, body=body, content_type=content_type
        )
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw[:200].decode(errors="replace")}
        return status, decoded if isinstance(decoded, dict) else {}

    def _send(
        self,
        method: str,
        path: str,
        action: Action,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> tuple[int, bytes]:
        url = self._prefix + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = content_type
        started = time.monotonic()
        with self._lock:
            if self._exec is not None:
                self._use_exec_auth(self._exec.current())  # runs the plugin once expired
            resp = self._exchange(method, url, headers, data, action)
            if resp.status == 401 and self._exec is not None and self._exec_auth is not None:
                # As kubectl: credentials refused are refreshed once, then
                # the request is made again with them.
                self._use_exec_auth(self._exec.rejected(self._exec_auth))
                resp = self._exchange(method, url, headers, data, action)
        ms = (time.monotonic() - started) * 1000
        origin = self.server.removesuffix(self._prefix)
        console.detail(f"{method} {origin}{url} {resp.status} in {ms:.0f} ms")
        return resp.status, resp.body

    def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        action: Action,
    ) -> Response:
        """One request on the kept-alive connection (the lock held)."""
        headers = {**headers, **self._auth.headers}
        for attempt in (1, 2):
            conn = self._connection()
            reused = conn.is_open
            try:
                return conn.request(method, url, headers=headers, body=data)
            except HeaderError as e:
                raise FatalError(
                    f"context {self.context!r}: cannot {action.describe()}: {e} "
                    "(check the kubeconfig's token or the credential plugin's output)"
                ) from None
            except (OSError, HTTPError) as e:
                conn.close()
                self._conn = None
                # A kept-alive connection the server closed meanwhile
                # (reset, broken pipe, TLS EOF): one fresh try. Every
                # request devreg makes is idempotent. A timeout is not
                # retried: the caller's deadline counts.
                if attempt == 1 and reused and not isinstance(e, TimeoutError):
                    continue
                raise self._unreachable(action, e) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def error(self, action: Action, status: int, body: Mapping[str, Any]) -> ApiError:
        """The user-facing error for a failed request."""
        message = str(body.get("message") or "")
        reason = str(body.get("reason") or "")
        causes = (body.get("details") or {}).get("causes") or []
        where = f"(context {self.context!r}, server {self.server})"
        if status == 401:
            text = (
                f"the API server {self.server} rejected the credentials of context "
                f"{self.context!r} (401 Unauthorized) while trying to {action.describe()}: "
                "log in again (for example re-run your cloud's get-credentials command)"
            )
        elif status == 403 and "being terminated" in message:
            text = (
                f"namespace {action.namespace!r} is being deleted {where}: wait until "
                f"`kubectl get namespace {action.namespace}` no longer finds it, then run "
                "devreg again, or use another namespace (--namespace or localRegistry.namespace)"
            )
        elif status == 403:
            m = _RBAC.search(message)
            verb = m.group("verb") if m else action.verb
            resource = resource_name(action.kind)
            if m:
                resource = m.group("resource") + (
                    f".{m.group('group')}" if m.group("group") else ""
                )
            ns = (m.group("namespace") if m else None) or action.namespace
            scope = f"in namespace {ns!r}" if ns else "cluster-wide"
            user = f" (user {self.ctx.user_name!r})" if self.ctx.user_name else ""
            text = (
                f"context {self.context!r}{user} may not {verb} {resource} {scope} "
                f"on {self.server}: the server said: {message or reason}. Ask the cluster's "
                f"admin for permission to {verb} {resource} there, or run the registry in a "
                "namespace you may use (--namespace or localRegistry.namespace)"
            )
        else:
            text = (
                f"{action.describe()} failed {where}: {status} {reason or 'error'}: "
                f"{message or 'no message'}"
            )
        return ApiError(text, status=status, reason=reason, server_message=message, causes=causes)

    # -- verbs --

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        action = Action("get", kind, namespace, name)
        status, body = self.request("GET", resource_path(kind, namespace, name), action)
        if status == 404:
            return None
        if status != 200:
            raise self.error(action, status, body)
        return body

    def list(
        self,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        action = Action("list", kind, namespace)
        query = {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        status, body = self.request("GET", resource_path(kind, namespace), action, query=query)
        if status != 200:
            raise self.error(action, status, body)
        items = body.get("items") or []
        return [i for i in items if isinstance(i, dict)]

    def pod_log(
        self,
        namespace: str,
        name: str,
        *,
        container: str,
        previous: bool = False,
        tail_lines: int = 5,
        limit_bytes: int = 4096,
    ) -> str | None:
        """The last lines a container wrote (``previous``: its last run before this
        one), read through its node's kubelet; None when there is none to read or the
        API server refuses (no permission, the kubelet unreachable)."""
        action = Action("get", "Pod", namespace, name)
        query = {
            "container": container,
            "tailLines": str(tail_lines),
            "limitBytes": str(limit_bytes),
        }
        if previous:
            query["previous"] = "true"
        path = resource_path("Pod", namespace, name) + "/log"
        status, raw = self._send("GET", path, action, query=query, accept="*/*")
        return raw.decode(errors="replace") if status == 200 else None

    def apply(self, obj: Mapping[str, Any], *, force: bool = False) -> dict[str, Any]:
        """Server-side apply with field manager ``devreg``. Without ``force``,
        fields another manager set to other values are a 409 conflict."""
        kind = str(obj["kind"])
        meta = obj["metadata"]
        namespace = meta.get("namespace")
        action = Action("patch", kind, namespace, meta["name"])
        query = {"fieldManager": FIELD_MANAGER}
        if force:
            query["force"] = "true"
        status, body = self.request(
            "PATCH",
            resource_path(kind, namespace, meta["name"]),
            action,
            query=query,
            body=obj,
            content_type=APPLY_CONTENT_TYPE,
        )
        if status not in (200, 201):
            raise self.error(action, status, body)
        return body

    def delete(
        self, kind: str, namespace: str | None, name: str, *, propagation: str = "Background"
    ) -> bool:
        """Delete; False when there was nothing to delete."""
        action = Action("delete", kind, namespace, name)
        status, body = self.request(
            "DELETE",
            resource_path(kind, namespace, name),
            action,
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
        )
        if status == 404:
            return False
        if status not in (200, 202):
            raise self.error(action, status, body)
        return True
