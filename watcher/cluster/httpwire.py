"""A minimal HTTP/1.1 client: one kept-alive connection, request, response.

Why not ``http.client``: importing it (and the ``email`` parser it pulls
in) costs ~25 ms here, a sixth of a whole ``kubectl get``, and ``devreg up``
runs at every watcher start (bench/up.py). What devreg sends is small JSON
to the API server and ``GET /v2/`` probes, so a client that does
Content-Length and chunked bodies over one socket is all it needs.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import BinaryIO

_MAX_LINE = 65536
_MAX_HEADERS = 200


class ProtocolError(OSError):
    """The server's answer was not HTTP/1.x as expected."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class Connection:
    """One connection to ``host:port`` (TLS when ``sslctx`` is given), opened
    on first use and reused while the server keeps it open."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        sslctx: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._sslctx = sslctx
        self._server_hostname = server_hostname or host
        self._sock: socket.socket | None = None
        self._rfile: BinaryIO | None = None

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        if self._rfile is not None:
            self._rfile.close()
            self._rfile = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> tuple[socket.socket, BinaryIO]:
        if self._sock is None or self._rfile is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._sslctx is not None:
                    sock = self._sslctx.wrap_socket(sock, server_hostname=self._server_hostname)
            except BaseException:
                sock.close()
                raise
            self._sock = sock
            self._rfile = sock.makefile("rb")
        return self._sock, self._rfile

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        sock, rfile = self._connect()
        default_port = 443 if self._sslctx is not None else 80
        host = self.host if ":" not in self.host else f"[{self.host}]"
        host_header = host if self.port == default_port else f"{host}:{self.port}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        try:
            sock.sendall(data)
            response = self._read_response(rfile, method)
        except BaseException:
            self.close()
            raise
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def _read_response(self, rfile: BinaryIO, method: str) -> Response:
        status_line = rfile.readline(_MAX_LINE)
        if not status_line:
            # The server closed a kept-alive connection: the caller may retry.
            raise ConnectionResetError("the server closed the connection")
        parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP response: {status_line[:60]!r}")
        status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = rfile.readline(_MAX_LINE)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise ProtocolError("too many response headers")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked(rfile)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            body = rfile.read(length)
            if len(body) != length:
                raise ConnectionResetError("the response ended early")
        else:
            body = rfile.read()
            self.close()
        return Response(status, reason, headers, body)

    @staticmethod
    def _read_chunked(rfile: BinaryIO) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = rfile.readline(_MAX_LINE)
            if not size_line:
                raise ConnectionResetError("the response ended early")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunk = rfile.read(size)
            if len(chunk) != size:
                raise ConnectionResetError("the response ended early")
            chunks.append(chunk)
            rfile.readline(_MAX_LINE)  # the CRLF after each chunk
