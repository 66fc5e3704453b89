"""How commands reach the ``buildkitd`` environment: the one part of an
in-cluster build that depends on where buildkitd runs.

A transport runs one command there, feeds it stdin bytes, streams its output
lines, and stops it when ``cancel`` is set. Two exist:

* :class:`LocalTransport`: a subprocess on this machine, through the project's
  one subprocess wrapper (:mod:`watcher.proc`). Used with a buildkitd on this
  machine: tests, benchmarks.
* :class:`ExecTransport`: an exec stream of the Kubernetes API into the
  ``buildkitd`` container of the registry pod (the official client's
  ``stream(connect_get_namespaced_pod_exec, …)``).
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from hookpkg.errors import FatalError
from watcher import proc

Log = Callable[[str], None]


class Transport(Protocol):
    name: str
    # A directory in the buildkitd environment for per-build work directories.
    workroot: str

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        log: Log | None = None,
        cancel: threading.Event | None = None,
    ) -> proc.Completed:
        """Run ``argv`` there with ``stdin``; merged output lines go to
        ``log``. Never raises for a failing command; sets ``cancelled`` when
        ``cancel`` stopped it."""
        ...


class LocalTransport:
    """buildkitd on this machine: commands are local subprocesses."""

    name = "local"

    def __init__(
        self, *, workroot: str | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.workroot = workroot or tempfile.gettempdir()
        self.env = env

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        log: Log | None = None,
        cancel: threading.Event | None = None,
    ) -> proc.Completed:
        return proc.run(argv, stdin=stdin, log=log, cancel=cancel, env=self.env)


# --- exec into the registry pod --------------------------------------------------------

STDIN, STDOUT, STDERR, ERROR = 0, 1, 2, 3
# Websocket frames of at most this many stdin bytes: large enough that a
# 100 MB context is ~100 frames, small enough not to stall the reader.
STDIN_CHUNK = 1 << 20
EXEC_GRACE = 2.0
_POLL = 0.05

# Runs the command in the background of a shell that records its pid, so a
# second exec can stop it: closing the websocket does not end a process in the
# container. ``exec 3<&0 … <&3``: a background job of a non-interactive shell
# would otherwise read /dev/null instead of our stdin. ``setsid`` (when the
# image has it) makes the command a process group, so the stop reaches the
# command's children too (``tar`` under the build's shell).
WRAPPER = (
    'p="$0"; command -v setsid >/dev/null 2>&1 && set -- setsid "$@"; '
    'exec 3<&0; "$@" <&3 3<&- & c=$!; exec 3<&-; echo "$c" >"$p"; '
    'wait "$c"; r=$?; rm -f "$p"; exit "$r"'
)
# TERM the group (or the process), KILL it after the grace period.
STOPPER = (
    'p=$(cat "$0" 2>/dev/null) || exit 0; '
    'kill -TERM -"$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || exit 0; i=0; '
    'while kill -0 "$p" 2>/dev/null; do i=$((i+1)); '
    'if [ "$i" -gt "$1" ]; then kill -KILL -"$p" 2>/dev/null || kill -KILL "$p"; break; fi; '
    "sleep 0.1; done"
)


def wrapped_argv(pidfile: str, argv: Sequence[str]) -> list[str]:
    return ["sh", "-c", WRAPPER, pidfile, *argv]


def stopper_argv(pidfile: str, grace: float = EXEC_GRACE) -> list[str]:
    return ["sh", "-c", STOPPER, pidfile, str(max(1, int(grace * 10)))]


class WebSocketLike(Protocol):
    """The part of ``kubernetes.stream.ws_client.WSClient`` used here
    (``binary=True``: channels carry bytes)."""

    def is_open(self) -> bool: ...
    def update(self, timeout: float = 0) -> None: ...
    def read_channel(self, channel: int, timeout: float = 0) -> Any: ...
    def write_stdin(self, data: bytes) -> None: ...
    def close(self, **kwargs: Any) -> None: ...


class _Lines:
    """Bytes of one channel into complete lines."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> list[str]:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        return [raw.decode("utf-8", "replace").rstrip("\r") for raw in lines]

    def flush(self) -> list[str]:
        rest, self.pending = self.pending, b""
        return [rest.decode("utf-8", "replace").rstrip("\r")] if rest else []


def exit_code(status: bytes | str) -> tuple[int, str | None]:
    """The exit code from the error channel's ``Status`` document, and its
    message when the command did not even run (no such container …)."""
    text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
    if not text.strip():
        # The connection ended without a status: the exec was cut off.
        return 255, "the exec stream closed without an exit status"
    try:
        doc = json.loads(text)
    except ValueError:
        return 255, text.strip()
    if doc.get("status") == "Success":
        return 0, None
    for cause in (doc.get("details") or {}).get("causes") or ():
        if cause.get("reason") == "ExitCode":
            with contextlib.suppress(TypeError, ValueError):
                return int(cause.get("message")), None
    return 255, str(doc.get("message") or text.strip())


def _send_stdin(ws: WebSocketLike, stdin: bytes) -> None:
    """Write ``stdin`` in frames, then half-close it where the protocol can."""
    try:
        for i in range(0, len(stdin), STDIN_CHUNK):
            ws.write_stdin(stdin[i : i + STDIN_CHUNK])
        # v5.channel.k8s.io can half-close stdin (the command sees EOF); with v4 it
        # cannot, which is why the build script never waits for EOF (``head -c
        # <size>`` ends tar's input).
        close_channel = getattr(ws, "close_channel", None)
        if close_channel is not None:
            close_channel(STDIN)
    except Exception:  # noqa: BLE001 - websocket-client's own exception types
        # The command ended without reading everything (it refused a stale work
        # directory): its output and exit status say why.
        pass


def drive(
    ws: WebSocketLike,
    *,
    argv: Sequence[str],
    stdin: bytes | None,
    log: Log | None,
    cancel: threading.Event | None,
    stop: Callable[[], None],
    tail_lines: int = proc.TAIL_LINES,
    grace: float = EXEC_GRACE,
) -> proc.Completed:
    """Speak the exec channel protocol on an open stream: send ``stdin``,
    signal its end, relay stdout/stderr lines, read the exit status. On
    ``cancel`` call ``stop`` (which ends the command in the container) and
    wait a bounded time for the stream to close."""
    started = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    channels = {STDOUT: _Lines(), STDERR: _Lines()}

    def emit(lines: list[str]) -> None:
        for line in lines:
            tail.append(line)
            if log is not None:
                log(line)

    def pump(timeout: float) -> None:
        ws.update(timeout=timeout)
        for channel, lines in channels.items():
            data = ws.read_channel(channel)
            if data:
                emit(lines.feed(data if isinstance(data, bytes) else data.encode()))

    cancelled = False
    deadline: float | None = None
    try:
        if stdin is not None:
            _send_stdin(ws, stdin)
        while ws.is_open():
            if cancel is not None and cancel.is_set() and not cancelled:
                cancelled = True
                stop()
                deadline = time.monotonic() + grace + 5.0
            if deadline is not None and time.monotonic() > deadline:
                break
            pump(_POLL)
        pump(0)
        for lines in channels.values():
            emit(lines.flush())
        status = ws.read_channel(ERROR)
    finally:
        ws.close()
    code, message = exit_code(status)
    if message and not cancelled:
        # The command did not run, or its end was not seen: not the
        # command's own failure, so not a build error of the user's.
        raise ExecFailed(message)
    return proc.Completed(tuple(argv), code, tuple(tail), cancelled, time.monotonic() - started)


class ExecFailed(FatalError):
    """The exec did not run the command (the API server could not reach the
    kubelet, no such container, the stream was cut off)."""


StreamFn = Callable[..., Any]


class ExecTransport:
    """Commands run in the ``buildkitd`` container of the registry pod."""

    name = "exec"

    def __init__(
        self,
        core_api: Any,  # kubernetes.client.CoreV1Api
        *,
        namespace: str,
        selector: str,  # ``app=<registry name>``
        container: str = "buildkitd",
        workroot: str = "/tmp",
        stream: StreamFn | None = None,
        owns_client: bool = False,  # close the API client on close()
    ) -> None:
        self.api = core_api
        self._owns_client = owns_client
        self.namespace = namespace
        self.selector = selector
        self.container = container
        self.workroot = workroot
        self._stream = stream
        self._pod: str | None = None

    def _stream_fn(self) -> StreamFn:
        if self._stream is None:
            from kubernetes.stream import stream

            self._stream = stream
        return self._stream

    def pod(self, *, refresh: bool = False) -> str:
        """The newest Ready pod of the registry that has the buildkitd container."""
        if self._pod is not None and not refresh:
            return self._pod
        try:
            pods = self.api.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        except Exception as e:  # noqa: BLE001 - ApiException, urllib3's errors
            raise FatalError(
                f"cannot list the registry pods (label {self.selector}) in namespace "
                f"{self.namespace!r}: {_reason(e)}"
            ) from None
        ready = [p for p in pods if _ready(p) and _has_container(p, self.container)]
        if not ready:
            raise FatalError(
                f"no Ready registry pod with a {self.container!r} container "
                f"(label {self.selector}) in namespace {self.namespace!r}: "
                "is `localbuild: false` applied (`devreg up`)?"
            )
        ready.sort(key=_created)
        self._pod = str(ready[-1].metadata.name)
        return self._pod

    def open(self, command: Sequence[str], *, stdin: bool) -> WebSocketLike:
        pod = self.pod()
        try:
            ws: WebSocketLike = self._stream_fn()(
                self.api.connect_get_namespaced_pod_exec,
                pod,
                self.namespace,
                container=self.container,
                command=list(command),
                stdin=stdin,
                stdout=True,
                stderr=True,
                tty=False,
                _preload_content=False,
                binary=True,
            )
        except Exception as e:  # noqa: BLE001 - the client wraps everything in ApiException
            raise FatalError(
                f"cannot exec into pod {self.namespace}/{pod} (container {self.container!r}): "
                f"{_reason(e)}"
            ) from None
        return ws

    def close(self) -> None:
        if self._owns_client:
            self.api.api_client.close()

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        log: Log | None = None,
        cancel: threading.Event | None = None,
    ) -> proc.Completed:
        pidfile = f"{self.workroot}/devreg-exec-{uuid.uuid4().hex}.pid"

        def stop() -> None:
            self._stop(pidfile)

        try:
            ws = self.open(wrapped_argv(pidfile, argv), stdin=stdin is not None)
        except FatalError:
            # The pod may have been replaced since it was looked up.
            self.pod(refresh=True)
            ws = self.open(wrapped_argv(pidfile, argv), stdin=stdin is not None)
        try:
            return drive(ws, argv=argv, stdin=stdin, log=log, cancel=cancel, stop=stop)
        except ExecFailed as e:
            raise FatalError(
                f"cannot exec into pod {self.namespace}/{self._pod} "
                f"(container {self.container!r}): {_shorten(str(e))}"
            ) from None

    def _stop(self, pidfile: str) -> None:
        ws = self.open(stopper_argv(pidfile), stdin=False)
        drive(ws, argv=("stop",), stdin=None, log=None, cancel=None, stop=lambda: None)


def _shorten(message: str) -> str:
    # The API server quotes the kubelet URL with the whole command as its
    # query: noise in a one-line error.
    return re.sub(r'\?[^"\s]*', "?…", message)


def _reason(e: BaseException) -> str:
    # ApiException from the websocket call carries the handshake's error as
    # its reason ("Handshake status 500 … error dialing backend").
    text = str(getattr(e, "reason", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _ready(pod: Any) -> bool:
    status = pod.status
    if status is None or status.phase != "Running" or pod.metadata.deletion_timestamp:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions or ())


def _created(pod: Any) -> float:
    created = pod.metadata.creation_timestamp
    return float(created.timestamp()) if created is not None else 0.0


def _has_container(pod: Any, name: str) -> bool:
    return any(c.name == name for c in pod.spec.containers or ())
