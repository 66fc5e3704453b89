"""The one HTTP client devreg uses to talk to registries (the Distribution
API, ``/v2/``): the reachability probe of ``up`` and ``status``
(:func:`answers_v2`, :func:`wait_v2`), the "is this tag there" question of a pipeline
(:func:`manifest_present`), the requests of the push check
(:func:`request`, :mod:`watcher.cluster.pushcheck`), and the pull probe's image
(:func:`push_blob`, :func:`put_manifest`, :mod:`watcher.cluster.pullprobe`).

Each call opens one connection (:mod:`watcher.cluster.httpconn`) and closes
it: registries are asked a few questions per run, and a closed connection
leaves nothing to go stale between a watcher's rounds. Proxy settings are
honoured (:mod:`watcher.cluster.netproxy`); loopback registries are always
reached directly.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping

from watcher.cluster.httpconn import Connection, HTTPError, Response, network_words
from watcher.cluster.netproxy import proxy_for

PROBE_TIMEOUT = 2.0
WAIT_INTERVAL = 0.1
DEFAULT_TIMEOUT = 5.0
MAX_BODY = 1 << 16  # error documents and tokens; nothing devreg asks for is larger


class ProxyFailure(OSError):
    """No answer through the proxy; the message names the proxy."""


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    sslctx: ssl.SSLContext | None = None,
    env: Mapping[str, str] | None = None,
) -> Response:
    """One request to ``url`` (http or https), through the proxy ``env``
    (default: the process's environment) names for it. Raises OSError or
    :data:`HTTPError` when no HTTP answer came."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = proxy_for(parts.scheme, parts.hostname, port, env)
    conn = Connection(
        parts.scheme, parts.hostname, port, timeout=timeout, sslctx=sslctx, proxy=proxy
    )
    try:
        return conn.request(method, target, headers=headers, body=body, max_body=MAX_BODY)
    except OSError as e:
        if proxy is None or isinstance(e, ssl.SSLError):
            raise
        raise ProxyFailure(f"through {proxy.describe()}: {network_words(e, timeout)}") from e
    finally:
        conn.close()


def _url(hostport: str, path: str) -> str:
    return f"http://{hostport}{path}"


def answers_v2(hostport: str, *, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when ``http://hostport/v2/`` answers as a registry does (200 or
    401), else why not, in words."""
    try:
        status = request("GET", _url(hostport, "/v2/"), timeout=timeout).status
    except (OSError, HTTPError) as e:
        return network_words(e, timeout)
    return None if status in (200, 401) else f"GET /v2/ answered {status}"


def wait_v2(hostport: str, *, timeout: float, cancel: threading.Event | None = None) -> str | None:
    """:func:`answers_v2` asked again every ``WAIT_INTERVAL`` s until it answers
    (None), ``timeout`` has passed or ``cancel`` is set (then the last reason)."""
    cancel = cancel or threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        error = answers_v2(hostport, timeout=min(PROBE_TIMEOUT, max(left, 0.2)))
        if error is None or left <= 0 or cancel.wait(min(WAIT_INTERVAL, max(left, 0))):
            return error


def manifest_present(
    hostport: str, path: str, reference: str, *, accept: str, timeout: float = DEFAULT_TIMEOUT
) -> bool | None:
    """HEAD ``/v2/<path>/manifests/<reference>`` on a plain-HTTP registry:
    True (200), False (404), or None when it gives no such answer."""
    url = _url(hostport, f"/v2/{path}/manifests/{urllib.parse.quote(reference, safe=':')}")
    try:
        status = request("HEAD", url, headers={"Accept": accept}, timeout=timeout).status
    except (OSError, HTTPError):
        return None
    return {200: True, 404: False}.get(status)


class PushRefused(OSError):
    """The registry answered a push step with something else than success."""


def push_blob(
    hostport: str, path: str, digest: str, data: bytes, *, timeout: float = DEFAULT_TIMEOUT
) -> bool:
    """``data`` as blob ``digest`` of ``/v2/<path>`` on a plain-HTTP registry, in one
    monolithic upload (POST, then PUT ``?digest=``); False when the registry already
    had it (HEAD 200), True when it was sent. Raises :class:`PushRefused`, OSError or
    :data:`HTTPError`."""
    if request("HEAD", _url(hostport, f"/v2/{path}/blobs/{digest}"), timeout=timeout).status == 200:
        return False
    started = request("POST", _url(hostport, f"/v2/{path}/blobs/uploads/"), timeout=timeout)
    location = started.header("Location")
    if started.status != 202 or not location:
        raise PushRefused(f"{hostport}: starting an upload answered {started.status}")
    # Absolute or not, as registries differ; the digest joins any query it carries.
    where = urllib.parse.urlsplit(location)
    query = urllib.parse.urlencode({"digest": digest})
    target = _url(hostport, f"{where.path}?{where.query + '&' if where.query else ''}{query}")
    done = request(
        "PUT",
        target,
        headers={"Content-Type": "application/octet-stream"},
        body=data,
        timeout=timeout,
    )
    if done.status != 201:
        raise PushRefused(f"{hostport}: uploading {digest} answered {done.status}")
    return True


def put_manifest(
    hostport: str,
    path: str,
    reference: str,
    body: bytes,
    *,
    media_type: str,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """PUT ``/v2/<path>/manifests/<reference>`` on a plain-HTTP registry."""
    url = _url(hostport, f"/v2/{path}/manifests/{urllib.parse.quote(reference, safe=':')}")
    done = request("PUT", url, headers={"Content-Type": media_type}, body=body, timeout=timeout)
    if done.status != 201:
        raise PushRefused(f"{hostport}: PUT manifest {path}:{reference} answered {done.status}")
