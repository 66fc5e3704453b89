"""The port-forward, at its narrowest boundary and through a real kubelet.

The forwarder's relay is tested with streams to real local TCP servers (an echo
server, a real registry) standing in for "the pod", for what a real kubelet cannot
be made to do on demand: half-close, a dropped stream mid-transfer, a replaced
pod (failing opens, then a new target), giving up, and shutdown. The part that
talks to the cluster, :class:`PodPortOpener`, runs for real: a stream through the
API server and a real kubelet to the registry devreg deployed, and the API server's
refusal for a pod whose node has no reachable kubelet (a kwok node). The whole path
— devreg in a network namespace where no NodePort answers, building and pushing
through its forward, a registry pod replaced mid-watch — is
tests/watcher/real_nodes_test.py.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hookpkg.config import LocalRegistry
from hookpkg.errors import FatalError
from tests.watcher.registries import running_registry
from watcher.cluster.portforward import Forwarder, OpenError, PodPortOpener, Stream
from watcher.cluster.registry import answers_v2


class EchoServer:
    """A TCP server on loopback that echoes until the peer half-closes; with
    ``drop_after`` it closes each connection after that many bytes (a pod
    that went away mid-stream)."""

    def __init__(self, drop_after: int | None = None) -> None:
        self.drop_after = drop_after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = self.sock.getsockname()
        self.accepted = 0
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _echo(self, conn: socket.socket) -> None:
        seen = 0
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    return
                conn.sendall(data)
                seen += len(data)
                if self.drop_after is not None and seen >= self.drop_after:
                    return

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._acceptor.join(5)
        for t in self._threads:
            t.join(5)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def to(address: Any) -> Callable[[], Stream]:
    def open_stream() -> Stream:
        try:
            return Stream(socket.create_connection(address, timeout=5))
        except OSError as e:
            raise OpenError(str(e)) from None

    return open_stream


def client(fwd: Forwarder) -> socket.socket:
    return socket.create_connection(fwd.address, timeout=10)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_relays_both_ways_and_passes_half_close(echo: EchoServer) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    with Forwarder(0, to(echo.address)) as fwd, client(fwd) as c:
        sender = threading.Thread(target=lambda: (c.sendall(payload), c.shutdown(socket.SHUT_WR)))
        sender.start()
        received = read_all(c)  # EOF arrives only after our half-close went through
        sender.join()
    assert received == payload


def test_listens_on_loopback_only(echo: EchoServer) -> None:
    with Forwarder(0, to(echo.address)) as fwd:
        assert fwd.address[0] == "127.0.0.1"
    with pytest.raises(ValueError, match="loopback"):
        Forwarder(0, to(echo.address), host="0.0.0.0")


def test_each_connection_gets_its_own_stream(echo: EchoServer) -> None:
    with Forwarder(0, to(echo.address)) as fwd:
        conns = [client(fwd) for _ in range(3)]
        for i, c in enumerate(conns):
            c.sendall(f"hello {i}".encode())
        assert [c.recv(100) for c in conns] == [b"hello 0", b"hello 1", b"hello 2"]
        for c in conns:
            c.close()
    assert echo.accepted == 3


def test_a_dropped_stream_ends_its_connection_and_the_next_one_works() -> None:
    pod = EchoServer(drop_after=5)
    try:
        with Forwarder(0, to(pod.address)) as fwd:
            with client(fwd) as c:
                c.sendall(b"12345")
                assert read_all(c) == b"12345"  # then the far end went away: EOF
            with client(fwd) as c:
                c.sendall(b"again")
                assert read_all(c) == b"again"
    finally:
        pod.close()
    assert pod.accepted == 2


def test_a_replaced_pod_is_found_again() -> None:
    # The first opens fail (the old pod is gone, as the API server would say),
    # then the lookup finds the new pod and the connection goes through.
    new_pod = EchoServer()
    attempts: list[float] = []

    def open_stream() -> Stream:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise OpenError('pods "registry-old" not found')
        return Stream(socket.create_connection(new_pod.address, timeout=5))

    logged: list[str] = []
    try:
        with Forwarder(0, open_stream, log=logged.append, retry_interval=0.05) as fwd:
            with client(fwd) as c:
                c.sendall(b"ping")
                assert c.recv(10) == b"ping"
            assert fwd.last_error == 'pods "registry-old" not found'
    finally:
        new_pod.close()
    assert len(attempts) == 3
    assert logged[0] == 'port-forward: pods "registry-old" not found; trying again'


def test_gives_up_after_connect_timeout() -> None:
    def never() -> Stream:
        raise OpenError("no Ready registry pod")

    logged: list[str] = []
    with (
        Forwarder(0, never, log=logged.append, connect_timeout=0.3, retry_interval=0.05) as fwd,
        client(fwd) as c,
    ):
        started = time.monotonic()
        assert read_all(c) == b""
        assert time.monotonic() - started < 5
    assert "giving up on this connection: no Ready registry pod" in logged[-1]


def test_close_ends_open_connections(echo: EchoServer) -> None:
    fwd = Forwarder(0, to(echo.address)).start()
    c = client(fwd)
    c.sendall(b"x")
    assert c.recv(1) == b"x"
    fwd.close()  # joins its threads: the autouse fixture checks none are left
    assert read_all(c) == b""
    c.close()
    with pytest.raises(OSError):
        socket.create_connection(fwd.address, timeout=1)


def test_port_in_use_says_so(echo: EchoServer) -> None:
    with Forwarder(0, to(echo.address)) as first:
        busy = first.address[1]
        with pytest.raises(FatalError, match=f"cannot forward 127.0.0.1:{busy}"):
            Forwarder(busy, to(echo.address)).start()


def test_a_registry_answers_through_the_forward(tmp_path: Path) -> None:
    with running_registry(tmp_path / "reg") as host:
        h, p = host.split(":")
        with Forwarder(0, to((h, int(p)))) as fwd:
            assert answers_v2(f"127.0.0.1:{fwd.address[1]}") is None


@pytest.mark.testenv
def test_pod_port_opener_reaches_the_registry_through_a_real_kubelet(testenv: Any) -> None:
    """The registry devreg deploys runs on a real node: the stream goes API server ->
    kubelet -> the pod's port, and an HTTP request through it gets the registry's
    answer."""
    import secrets

    from watcher.cluster import deploy as deploy
    from watcher.cluster.kube import Kube

    ns = f"devreg-t-{secrets.token_hex(4)}"
    with Kube(testenv.context) as kube:
        try:
            deployed = deploy.ensure_objects(kube, LocalRegistry(localbuild=True), ns)
            pod = deploy.wait_ready(kube, deployed, timeout=60) or deploy.current_pod(
                kube, ns, "registry", "Deployment"
            )
            assert pod is not None
            opener = PodPortOpener(
                context=testenv.context, namespace=ns, find_pod=lambda: pod.name, port=5000
            )
            try:
                stream = opener()
                try:
                    stream.sock.sendall(b"GET /v2/ HTTP/1.0\r\nHost: registry\r\n\r\n")
                    answer = b""
                    while b"\r\n" not in answer:
                        chunk = stream.sock.recv(4096)
                        if not chunk:
                            break
                        answer += chunk
                finally:
                    stream.release()
            finally:
                opener.close()
            assert answer.split(b"\r\n", 1)[0].split()[1] == b"200", answer
        finally:
            kube.delete("Namespace", None, ns)


@pytest.mark.testenv
def test_pod_port_opener_explains_the_api_servers_refusal(testenv: Any) -> None:
    """A pod on a node whose kubelet cannot be reached (one of kwok's tainted nodes,
    which the pod asks for): the API server refuses the stream, and the message
    says which pod and port and what the API server said."""
    import secrets

    from watcher.cluster.kube import Kube

    ns = f"devreg-t-{secrets.token_hex(4)}"
    with Kube(testenv.context) as kube:
        try:
            kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            kube.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "registry-kwok", "namespace": ns},
                    "spec": {
                        "nodeSelector": {"type": "kwok"},
                        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                        "containers": [{"name": "registry", "image": "registry:2.8.1"}],
                    },
                }
            )
            opener = PodPortOpener(
                context=testenv.context, namespace=ns, find_pod=lambda: "registry-kwok", port=5000
            )
            try:
                with pytest.raises(OpenError) as e:
                    deadline = time.monotonic() + 60
                    while True:  # until the pod is bound and kwok says it runs
                        pod = kube.get("Pod", ns, "registry-kwok") or {}
                        if (pod.get("status") or {}).get("phase") == "Running":
                            break
                        assert time.monotonic() < deadline, pod
                        time.sleep(0.1)
                    opener()
            finally:
                opener.close()
            assert f"port-forward to pod {ns}/registry-kwok port 5000 failed" in str(e.value)
            assert "error dialing backend" in str(e.value)
        finally:
            kube.delete("Namespace", None, ns)
