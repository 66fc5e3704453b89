"""A stand-in for the API server's pod endpoints, on loopback, kept for one framing
edge case a real kubelet cannot be made to produce here: a server that speaks only the
``v4.channel.k8s.io`` exec protocol (Kubernetes before 1.30), which cannot half-close
stdin. The test environment's API server and kubelets (v1.34) negotiate v5 with the
official client, so that case has no real counterpart here; everything else the exec
transport does runs through a real kubelet (``real_pod_test.py``).

It answers the two calls :class:`watcher.build.buildkit.transport.ExecTransport`
makes, at the wire level, so that the client side is the real one (the
official ``kubernetes`` client: ``CoreV1Api``, ``kubernetes.stream.stream``,
its ``WSClient`` and ``websocket-client``):

* ``GET /api/v1/namespaces/<ns>/pods?labelSelector=…``: a pod list;
* ``GET /api/v1/namespaces/<ns>/pods/<pod>/exec?command=…`` upgraded to a
  WebSocket with the ``v5.channel.k8s.io`` (or ``v4``) subprotocol: the
  command runs here as a local process, stdin/stdout/stderr travel as channel
  frames 0/1/2, the exit status as a ``Status`` document on channel 3, and a
  v5 ``[255, 0]`` frame closes stdin. As with a real container, a client that
  goes away does not stop the process.

What it does not prove: the API server's proxying to a kubelet, the kubelet's
CRI exec, the sidecar image's userland (approximated by running the commands
with busybox applets first on PATH); real_pod_test.py does.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"


@dataclass
class Exec:
    """One exec request as the fake kubelet saw it."""

    namespace: str
    pod: str
    container: str
    command: list[str]
    stdin: bool
    protocol: str
    stdin_closed_by_client: bool = False
    returncode: int | None = None


@dataclass
class FakeKubelet:
    pods: list[dict[str, Any]]
    env: Mapping[str, str] | None = None  # the "container's" environment
    protocols: Sequence[str] = (V5, V4)  # what the server accepts, in preference order
    execs: list[Exec] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def host(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"


def pod(
    name: str,
    *,
    ready: bool = True,
    containers: Sequence[str] = ("registry", "buildkitd"),
    created: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "devreg",
            "labels": {"app": "registry"},
            "creationTimestamp": created,
        },
        "spec": {"containers": [{"name": c, "image": "x"} for c in containers]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("client closed")
        buf += chunk
    return buf


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    b1, b2 = _recv_exact(sock, 2)
    opcode = b1 & 0x0F
    length = b2 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _recv_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _recv_exact(sock, 8))
    mask = _recv_exact(sock, 4) if b2 & 0x80 else b""
    data = _recv_exact(sock, length)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return opcode, data


def frame(opcode: int, data: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(data)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + data


def _handler(kubelet: FakeKubelet) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            parts = url.path.strip("/").split("/")
            # api v1 namespaces <ns> pods [<pod> exec]
            if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5:
                self._pod_list(parts[3], query)
            elif len(parts) == 7 and parts[6] == "exec":
                self._exec(parts[3], parts[5], query)
            else:
                self.send_error(404)

        def _pod_list(self, namespace: str, query: dict[str, list[str]]) -> None:
            selector = query.get("labelSelector", [""])[0]
            key, _, value = selector.partition("=")
            items = [p for p in kubelet.pods if p["metadata"]["labels"].get(key) == value]
            body = json.dumps(
                {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _exec(self, namespace: str, pod_name: str, query: dict[str, list[str]]) -> None:
            offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
            protocol = next((p for p in kubelet.protocols if p in offered), None)
            if protocol is None or self.headers.get("Upgrade", "").lower() != "websocket":
                self.send_error(400, "want a websocket with a channel protocol")
                return
            accept = base64.b64encode(
                hashlib.sha1((self.headers["Sec-WebSocket-Key"] + GUID).encode()).digest()
            ).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.send_header("Sec-WebSocket-Protocol", protocol)
            self.end_headers()
            self.wfile.flush()
            ex = Exec(
                namespace,
                pod_name,
                query.get("container", [""])[0],
                query.get("command", []),
                query.get("stdin", ["false"])[0] == "true",
                protocol,
            )
            kubelet.execs.append(ex)
            self._session(ex)
            self.close_connection = True

        def _session(self, ex: Exec) -> None:
            sock = self.connection
            send_lock = threading.Lock()

            def send(opcode: int, data: bytes) -> None:
                # The client may have gone away; the process goes on.
                with send_lock, contextlib.suppress(OSError):
                    sock.sendall(frame(opcode, data))

            try:
                proc = subprocess.Popen(
                    ex.command,
                    stdin=subprocess.PIPE if ex.stdin else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=dict(kubelet.env) if kubelet.env is not None else None,
                )
            except OSError as e:
                failed = {
                    "status": "Failure",
                    "message": f"exec failed: {e}",
                    "reason": "InternalError",
                }
                send(2, b"\x03" + json.dumps(failed).encode())
                send(8, b"")
                return
            kubelet.processes.append(proc)

            def pump(pipe: Any, channel: int) -> None:
                for chunk in iter(lambda: pipe.read1(65536), b""):
                    send(2, bytes([channel]) + chunk)

            pumps = [
                threading.Thread(target=pump, args=(proc.stdout, 1), daemon=True),
                threading.Thread(target=pump, args=(proc.stderr, 2), daemon=True),
            ]
            for t in pumps:
                t.start()

            def client_frames() -> None:
                try:
                    while True:
                        opcode, data = read_frame(sock)
                        if opcode == 8:
                            return
                        if opcode == 9:
                            send(10, data)
                            continue
                        if not data:
                            continue
                        if data[0] == 255 and ex.protocol == V5 and data[1:] == b"\x00":
                            ex.stdin_closed_by_client = True
                            if proc.stdin is not None:
                                proc.stdin.close()
                        elif data[0] == 0 and proc.stdin is not None and not proc.stdin.closed:
                            try:
                                proc.stdin.write(data[1:])
                                proc.stdin.flush()
                            except (BrokenPipeError, ValueError):
                                pass
                except (ConnectionError, OSError):
                    return

            reader = threading.Thread(target=client_frames, daemon=True)
            reader.start()
            code = proc.wait()
            for t in pumps:
                t.join()
            ex.returncode = code
            if code == 0:
                status: dict[str, Any] = {"metadata": {}, "status": "Success"}
            else:
                status = {
                    "metadata": {},
                    "status": "Failure",
                    "message": f"command terminated with non-zero exit code: {code}",
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
                }
            send(2, b"\x03" + json.dumps(status).encode())
            send(8, struct.pack("!H", 1000))
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            reader.join(5)

    return Handler


def serve(kubelet: FakeKubelet) -> Iterator[FakeKubelet]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(kubelet))
    server.daemon_threads = True
    kubelet.server = server
    thread = threading.Thread(target=server.serve_forever, name="fake-kubelet", daemon=True)
    thread.start()
    try:
        yield kubelet
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        for proc in kubelet.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def busybox_userland(directory: str, busybox: str = "/bin/busybox") -> str:
    """A PATH directory of busybox applets, like the Alpine-based sidecar image."""
    os.makedirs(directory, exist_ok=True)
    for applet in (
        "sh",
        "tar",
        "mkdir",
        "rm",
        "cat",
        "kill",
        "sleep",
        "setsid",
        "echo",
        "wc",
        "ls",
        "head",
    ):
        link = os.path.join(directory, applet)
        if not os.path.lexists(link):
            os.symlink(busybox, link)
    return directory
