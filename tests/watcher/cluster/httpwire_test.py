"""The minimal HTTP/1.1 client against a real HTTP server (the standard
library's, speaking HTTP/1.1 with keep-alive) and a real registry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.watcher.registries import running_registry
from watcher.cluster.httpwire import Connection, ProtocolError


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[int] = set()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        Handler.connections.add(id(self.connection))
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nX-Trailer: t\r\n\r\n")
        elif self.path == "/close":
            body = b"bye"
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        else:
            body = self.path.encode()
            self.send_response(404 if self.path == "/missing" else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.upper())


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "expected"),
    [
        pytest.param("GET", "/plain", None, 200, b"/plain", id="content-length"),
        pytest.param("GET", "/missing", None, 404, b"/missing", id="status"),
        pytest.param("GET", "/chunked", None, 200, b"hello chunked world", id="chunked"),
        pytest.param("PATCH", "/p", b'{"a":1}', 200, b'{"A":1}', id="body"),
    ],
)
def test_request(
    server: tuple[str, int],
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    expected: bytes,
) -> None:
    conn = Connection(*server, timeout=5)
    try:
        resp = conn.request(method, path, body=body)
    finally:
        conn.close()
    assert (resp.status, resp.body) == (status, expected)


def test_keeps_the_connection_alive_and_honours_close(server: tuple[str, int]) -> None:
    Handler.connections.clear()
    conn = Connection(*server, timeout=5)
    assert conn.request("GET", "/a").body == b"/a"
    assert conn.request("GET", "/chunked").body == b"hello chunked world"
    assert conn.request("GET", "/b").body == b"/b"
    assert len(Handler.connections) == 1
    assert conn.request("GET", "/close").body == b"bye"
    assert not conn.is_open
    assert conn.request("GET", "/c").body == b"/c"  # a new connection
    conn.close()


def test_not_http(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)

        def answer() -> None:
            c, _ = s.accept()
            c.recv(1000)
            c.sendall(b"SSH-2.0-OpenSSH\r\n")
            c.close()

        t = threading.Thread(target=answer)
        t.start()
        conn = Connection("127.0.0.1", s.getsockname()[1], timeout=5)
        with pytest.raises(ProtocolError, match="not an HTTP response"):
            conn.request("GET", "/")
        t.join()


def test_real_registry(tmp_path: Path) -> None:
    with running_registry(tmp_path / "reg") as host:
        h, p = host.split(":")
        conn = Connection(h, int(p), timeout=5)
        try:
            resp = conn.request("GET", "/v2/")
            assert resp.status == 200
            assert resp.headers["docker-distribution-api-version"] == "registry/2.0"
            assert conn.request("GET", "/v2/_catalog").body.strip() == b'{"repositories":[]}'
        finally:
            conn.close()
