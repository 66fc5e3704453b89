"""The HTTP connection against real loopback servers: a raw socket server
that answers with exact bytes (what a proxy or a quirky server may send:
``100 Continue``, repeated and folded headers), the standard library's
HTTP/1.1 server (keep-alive, chunked bodies) and a real registry."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.watcher.registries import running_registry
from watcher.cluster.httpconn import Connection, HeaderError, HTTPError


class RawServer:
    """Accepts connections on loopback; for each request received (up to the
    blank line and a Content-Length body), sends the next scripted answer."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.received = b""
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(10)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self.answers:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    self.received += data
                    if not data:
                        break
                    conn.sendall(self.answers.pop(0))

    def close(self) -> None:
        self.answers.clear()
        self._sock.close()
        self._thread.join()


@pytest.fixture
def raw() -> Iterator[type[RawServer]]:
    servers: list[RawServer] = []

    class Made(RawServer):
        def __init__(self, answers: list[bytes]) -> None:
            super().__init__(answers)
            servers.append(self)

    yield Made
    for s in servers:
        s.close()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": "Bearer x\r\nX-Injected: 1"}, id="crlf"),
        pytest.param({"Authorization": "Bearer x\nX-Injected: 1"}, id="lf"),
        pytest.param({"Authorization": "Bearer x\rX-Injected: 1"}, id="cr"),
        pytest.param({"X-Bad\r\nName": "v"}, id="name"),
    ],
)
def test_cr_lf_in_a_header_is_refused_and_nothing_is_sent(
    raw: type[RawServer], headers: dict[str, str]
) -> None:
    server = raw([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    conn = Connection("http", "127.0.0.1", server.port, timeout=5)
    with pytest.raises(HeaderError, match="CR, LF|not a token"):
        conn.request("GET", "/v2/", headers=headers)
    conn.close()
    server.close()
    assert server.connections == 0
    assert server.received == b""


def test_100_continue_then_the_final_answer(raw: type[RawServer]) -> None:
    server = raw(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nLocation: /v2/x/blobs/uploads/1\r\nContent-Length: 2\r\n\r\nok"
        ]
    )
    with Connection("http", "127.0.0.1", server.port, timeout=5) as conn:
        resp = conn.request("POST", "/v2/x/blobs/uploads/", body=b"")
    assert (resp.status, resp.body) == (201, b"ok")
    assert resp.header("location") == "/v2/x/blobs/uploads/1"


def test_every_www_authenticate_is_kept(raw: type[RawServer]) -> None:
    server = raw(
        [
            b"HTTP/1.1 401 Unauthorized\r\n"
            b'WWW-Authenticate: Basic realm="r"\r\n'
            b'WWW-Authenticate: Bearer realm="https://auth/token",service="reg"\r\n'
            b"Content-Length: 0\r\n\r\n"
        ]
    )
    with Connection("http", "127.0.0.1", server.port, timeout=5) as conn:
        resp = conn.request("GET", "/v2/")
    assert resp.header_all("WWW-Authenticate") == [
        'Basic realm="r"',
        'Bearer realm="https://auth/token",service="reg"',
    ]
    assert resp.header("www-authenticate") == 'Basic realm="r"'


def test_a_folded_header_is_joined(raw: type[RawServer]) -> None:
    server = raw(
        [
            b"HTTP/1.1 401 Unauthorized\r\n"
            b'WWW-Authenticate: Bearer realm="https://auth/token",\r\n'
            b'\tservice="reg"\r\n'
            b"X-Next: yes\r\n"
            b"Content-Length: 0\r\n\r\n"
        ]
    )
    with Connection("http", "127.0.0.1", server.port, timeout=5) as conn:
        resp = conn.request("GET", "/v2/")
    assert resp.header_all("www-authenticate") == [
        'Bearer realm="https://auth/token", service="reg"'
    ]
    assert resp.header("x-next") == "yes"


def test_not_http(raw: type[RawServer]) -> None:
    server = raw([b"SSH-2.0-OpenSSH\r\n"])
    conn = Connection("http", "127.0.0.1", server.port, timeout=5)
    with pytest.raises(HTTPError):
        conn.request("GET", "/")
    assert not conn.is_open


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One handler per accepted connection (it serves that connection's requests);
    # counted when it starts. (An id() of the socket would be reused once the first
    # socket is freed: CI saw two connections counted as one.)
    connections: list[tuple[str, int]] = []

    def setup(self) -> None:
        super().setup()
        Handler.connections.append(self.client_address)

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nX-Trailer: t\r\n\r\n")
        elif self.path == "/close":
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"bye")
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
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
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
    server: int, method: str, path: str, body: bytes | None, status: int, expected: bytes
) -> None:
    with Connection("http", "127.0.0.1", server, timeout=5) as conn:
        resp = conn.request(method, path, body=body)
    assert (resp.status, resp.body) == (status, expected)


def test_keeps_the_connection_alive_and_honours_close(server: int) -> None:
    Handler.connections.clear()
    with Connection("http", "127.0.0.1", server, timeout=5) as conn:
        assert conn.request("GET", "/a").body == b"/a"
        assert conn.request("GET", "/chunked").body == b"hello chunked world"
        assert conn.request("GET", "/b").body == b"/b"
        assert len(Handler.connections) == 1
        assert conn.request("GET", "/close").body == b"bye"
        assert not conn.is_open
        assert conn.request("GET", "/c").body == b"/c"  # a new connection
        assert len(Handler.connections) == 2


def test_real_registry(tmp_path: Path) -> None:
    with running_registry(tmp_path / "reg") as host:
        h, p = host.split(":")
        with Connection("http", h, int(p), timeout=5) as conn:
            resp = conn.request("GET", "/v2/")
            assert resp.status == 200
            assert resp.header("Docker-Distribution-API-Version") == "registry/2.0"
            assert conn.request("GET", "/v2/_catalog").body.strip() == b'{"repositories":[]}'
