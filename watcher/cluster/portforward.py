"""Make ``127.0.0.1:<nodePort>`` reach the registry pod when the node port
itself does not answer on this machine (SPEC §3).

:class:`Forwarder` listens on the loopback address only and gives every
accepted connection its own stream to the pod, opened when the connection
arrives. That is what keeps the forward alive without a keep-alive: an idle
forward holds nothing that can drop, a stream that drops ends only the
connection that used it (as with ``kubectl port-forward``), and the next
connection opens a fresh one. When opening fails (the pod was replaced, the
API server hiccuped) the opener looks the pod up again and the attempt is
retried until ``connect_timeout``.

:class:`PodPortOpener` opens those streams through the Kubernetes API with the
official client's port-forward stream (a websocket per connection), with
devreg's credentials and proxy (:func:`watcher.cluster.kube.official_client`:
an exec plugin's credentials are shared with the API client and refreshed on
a 401). The official client is imported only here and only when a forward is
needed.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hookpkg.errors import FatalError
from watcher.cluster.kube import official_client

Log = Callable[[str], None]
_CHUNK = 1 << 16


def _quiet(_: str) -> None:
    pass


@dataclass
class Stream:
    """A connected duplex socket whose far end is the pod's port."""

    sock: socket.socket
    release: Callable[[], None] = field(default=lambda: None)  # free what carries it
    error: Callable[[], str | None] = field(default=lambda: None)  # why it ended, if it says


class OpenError(Exception):
    """A stream could not be opened; the message says why."""


Opener = Callable[[], Stream]


class Forwarder:
    """Listen on ``host:port`` (loopback) and relay each connection to a new
    stream from ``open_stream``."""

    def __init__(
        self,
        port: int,
        open_stream: Opener,
        *,
        host: str = "127.0.0.1",
        log: Log = _quiet,
        connect_timeout: float = 15.0,
        retry_interval: float = 0.2,
    ) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the forward binds the loopback address only")
        self._port = port
        self._host = host
        self._open = open_stream
        self._log = log
        self.connect_timeout = connect_timeout
        self.retry_interval = retry_interval
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._threads: set[threading.Thread] = set()
        self._active: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._acceptor: threading.Thread | None = None
        self.connections = 0  # accepted so far (tests, status)
        self.last_error: str | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            return self._host, self._port
        addr = self._listener.getsockname()
        return str(addr[0]), int(addr[1])

    def start(self) -> Forwarder:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self._host, self._port))
        except OSError as e:
            listener.close()
            raise FatalError(
                f"cannot forward {self._host}:{self._port} to the registry: {e.strerror} "
                "(another process listens there; stop it, e.g. an old `kubectl port-forward`)"
            ) from None
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"devreg-forward-{self.address[1]}", daemon=True
        )
        self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop listening, end every relayed connection, join all threads."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._acceptor is not None:
            self._acceptor.join()
        with self._lock:
            threads = list(self._threads)
            active = list(self._active)
        for client in active:
            # Unblocks a relay stuck sending to a client that stopped reading.
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join()
        if self._listener is not None:
            self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- accepting --

    def _accept_loop(self) -> None:
        assert self._listener is not None
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        client, _addr = self._listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        return
                    self.connections += 1
                    t = threading.Thread(
                        target=self._serve, args=(client,), name="devreg-forward-conn", daemon=True
                    )
                    with self._lock:
                        self._threads.add(t)
                    t.start()
        finally:
            sel.close()

    # -- one connection --

    def _open_with_retry(self) -> Stream | None:
        deadline = time.monotonic() + self.connect_timeout
        while not self._stop.is_set():
            try:
                return self._open()
            except OpenError as e:
                self.last_error = str(e)
                if time.monotonic() >= deadline:
                    self._log(f"port-forward: giving up on this connection: {e}")
                    return None
                self._log(f"port-forward: {e}; trying again")
            self._stop.wait(self.retry_interval)
        return None

    def _serve(self, client: socket.socket) -> None:
        try:
            with self._lock:
                self._active.add(client)
            stream = self._open_with_retry()
            if stream is None:
                return
            try:
                self._relay(client, stream.sock)
            finally:
                with contextlib.suppress(OSError):
                    stream.sock.close()
                stream.release()
                err = stream.error()
                if err:
                    self.last_error = err
                    self._log(f"port-forward: the stream ended: {err}")
        finally:
            with self._lock:
                self._active.discard(client)
                self._threads.discard(threading.current_thread())
            with contextlib.suppress(OSError):
                client.close()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy both ways until both sides closed their sending half (or the
        forwarder stops). A half-close is passed on as a half-close."""
        peers = {client: upstream, upstream: client}
        open_reads = {client, upstream}
        for s in peers:
            s.setblocking(True)
        sel = selectors.DefaultSelector()
        for s in peers:
            sel.register(s, selectors.EVENT_READ)
        # The wake-up socket of close(): a dup, so each relay can watch it.
        wake = self._wake_r.dup()
        sel.register(wake, selectors.EVENT_READ)
        try:
            while open_reads and not self._stop.is_set():
                for key, _ in sel.select():
                    src = key.fileobj
                    if src is wake:
                        return
                    assert isinstance(src, socket.socket)
                    try:
                        data = src.recv(_CHUNK)
                    except OSError:
                        return  # reset: the other side learns by its socket closing
                    dst = peers[src]
                    if data:
                        try:
                            dst.sendall(data)
                        except OSError:
                            return
                        continue
                    sel.unregister(src)
                    open_reads.discard(src)
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
        finally:
            sel.close()
            wake.close()


# --- through the Kubernetes API ---------------------------------------------------------------


def _api_exception_words(e: Any) -> str:
    """The Status message inside the client's handshake error, else its text."""
    import json

    text = str(getattr(e, "reason", "") or e)
    start = text.rfind('{"kind":"Status"')
    if start >= 0:
        try:
            return str(json.loads(text[start:].strip()).get("message") or text)
        except ValueError:
            pass
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def _unauthorized(e: Any) -> bool:
    status = getattr(e, "status", 0)
    return bool(status == 401 or "Handshake status 401" in str(getattr(e, "reason", "") or e))


class PodPortOpener:
    """Opens a stream to ``port`` of the registry's current pod. The pod name
    is cached and looked up again after a failure (the pod was replaced)."""

    def __init__(
        self,
        *,
        context: str,
        namespace: str,
        find_pod: Callable[[], str | None],
        port: int,
    ) -> None:
        from kubernetes import client

        self._namespace = namespace
        self._port = port
        self._find_pod = find_pod
        self._pod: str | None = None
        self._lock = threading.Lock()
        official = official_client(context)
        self._api_client = official.api_client
        self._credentials_rejected = official.credentials_rejected
        self._core = client.CoreV1Api(official.api_client)

    def close(self) -> None:
        self._api_client.close()

    def __call__(self) -> Stream:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import portforward

        with self._lock:
            pod = self._pod
        if pod is None:
            pod = self._find_pod()
            if pod is None:
                raise OpenError(f"no Ready registry pod in namespace {self._namespace!r}")

        def open_forward() -> Any:
            return portforward(
                self._core.connect_get_namespaced_pod_portforward,
                pod,
                self._namespace,
                ports=str(self._port),
            )

        try:
            try:
                pf = open_forward()
            except ApiException as e:
                # The websocket handshake's 401: credentials expired or
                # revoked. Refreshed once (shared with the API client).
                if not _unauthorized(e) or not self._credentials_rejected():
                    raise
                pf = open_forward()
        except (ApiException, OSError) as e:
            with self._lock:
                self._pod = None  # maybe replaced: look it up next time
            raise OpenError(
                f"port-forward to pod {self._namespace}/{pod} port {self._port} failed: "
                f"{_api_exception_words(e)}"
            ) from None
        with self._lock:
            self._pod = pod
        app_side = pf.socket(self._port)
        # The library wraps one end of a socketpair; its real socket is what
        # select() and shutdown() need.
        sock = getattr(app_side, "_socket", app_side)
        port = self._port

        def error() -> str | None:
            err = pf.error(port)
            return str(err) if err else None

        return Stream(sock=sock, release=pf.close, error=error)
