"""One HTTP/1.1 connection, as every network client of devreg opens it (the
API server in :mod:`watcher.cluster.kube`, registries in
:mod:`watcher.cluster.registryhttp`).

The protocol is the standard library's ``http.client``: it skips ``100
Continue`` before the final answer, keeps repeated headers, joins folded
ones, refuses CR/LF in what it sends. What this module adds around it: an
HTTP proxy (:mod:`watcher.cluster.netproxy`: ``CONNECT`` for https, the
absolute URL for http, as Go's client does), the TLS server name (kubeconfig
``tls-server-name``), header values checked before anything is sent
(:class:`HeaderError`), and a :class:`Response` read whole, with every header
kept in order.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from watcher.cluster.netproxy import Proxy

# What a request may raise besides OSError (a closed kept-alive connection is
# http.client.RemoteDisconnected, which is both).
HTTPError = http.client.HTTPException

_FOLD = re.compile(r"\r?\n[ \t]+")
_ILLEGAL_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_ILLEGAL_VALUE = re.compile(r"[\r\n\x00]")


class HeaderError(ValueError):
    """A header devreg was about to send is not a valid header (CR/LF in its
    value would inject another header or end the request early)."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # in order received; names lower-case, folds joined
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (``WWW-Authenticate`` may come several times)."""
        name = name.lower()
        return [v for k, v in self.headers if k == name]


def check_headers(headers: dict[str, str]) -> None:
    for name, value in headers.items():
        if not name or _ILLEGAL_NAME.search(name):
            raise HeaderError(f"HTTP header name {name!r} is not a token")
        if _ILLEGAL_VALUE.search(value):
            raise HeaderError(
                f"HTTP header {name!r}: the value contains CR, LF or NUL; refusing to send it"
            )


class _HTTPSConnection(http.client.HTTPSConnection):
    """``http.client.HTTPSConnection`` that checks the certificate against
    ``server_hostname`` (kubeconfig ``tls-server-name``) rather than the host
    it connects to."""

    def __init__(self, *args: Any, server_hostname: str | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._devreg_server_hostname = server_hostname

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        tunnel: str | None = getattr(self, "_tunnel_host", None)
        name = self._devreg_server_hostname or tunnel or self.host
        ctx: ssl.SSLContext = self._context  # type: ignore[attr-defined]
        self.sock = ctx.wrap_socket(self.sock, server_hostname=name)


class Connection:
    """One connection to ``scheme://host:port``, opened on first use and kept
    alive while the server keeps it open."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        timeout: float,
        sslctx: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"not an HTTP scheme: {scheme!r}")
        self.scheme = scheme
        self.host = host
        self.port = port
        self.timeout = timeout
        self.proxy = proxy
        self._conn: http.client.HTTPConnection
        # Through a proxy: the socket goes to the proxy; https asks it for a
        # tunnel (CONNECT host:port), http sends it absolute URLs.
        near_host, near_port = (proxy.host, proxy.port) if proxy else (host, port)
        self._origin = ""
        self._proxy_headers: dict[str, str] = {}
        if proxy is not None and proxy.authorization:
            self._proxy_headers["Proxy-Authorization"] = proxy.authorization
        if scheme == "https":
            self._conn = _HTTPSConnection(
                near_host,
                near_port,
                timeout=timeout,
                context=sslctx or ssl.create_default_context(),
                server_hostname=server_hostname,
            )
            if proxy is not None:
                check_headers(self._proxy_headers)
                self._conn.set_tunnel(host, port, headers=self._proxy_headers)
                self._proxy_headers = {}
        else:
            self._conn = http.client.HTTPConnection(near_host, near_port, timeout=timeout)
            if proxy is not None:
                bracketed = f"[{host}]" if ":" in host else host
                self._origin = f"http://{bracketed}:{port}"

    @property
    def is_open(self) -> bool:
        return self._conn.sock is not None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        max_body: int | None = None,
    ) -> Response:
        """Send one request and read its final answer (after any ``100
        Continue``). ``max_body``: read at most that much of the body, and
        close the connection (the rest is not wanted)."""
        headers = {"User-Agent": "devreg", **self._proxy_headers, **(headers or {})}
        check_headers(headers)
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        try:
            self._conn.request(method, self._origin + target, body=body, headers=headers)
            resp = self._conn.getresponse()
            data = resp.read() if max_body is None else resp.read(max_body)
        except BaseException:
            self._conn.close()
            raise
        if max_body is not None and not resp.isclosed():
            self._conn.close()
        fields = tuple(
            (name.lower(), _FOLD.sub(" ", value).strip()) for name, value in resp.getheaders()
        )
        return Response(resp.status, resp.reason, fields, data)


def network_words(error: BaseException, timeout: float) -> str:
    """Why no answer came, in words (the API client's and the registry client's)."""
    if isinstance(error, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return f"unknown host ({error.strerror})"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted ({error.verify_message})"
    return str(error) or type(error).__name__
