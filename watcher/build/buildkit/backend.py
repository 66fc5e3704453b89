"""The in-cluster build backend (``localbuild: false``, SPEC §3, §6).

One build is: pack the context and the Dockerfile into a tar
(:mod:`.context`), send it through a transport to the image's work directory
in the buildkitd environment, where ``tar`` unpacks it and ``buildctl`` builds
and pushes (:mod:`.buildctl`) in the same command, and read the progress
(:mod:`.progress`). One command per build, because each command is a round
trip to the API server on the exec transport.

The work directory (``<workroot>/devreg-ctx-<image>-<hash>``) stays between
builds and only changes are sent to it (see :mod:`.context`). A token file
written after each unpack guards that: a directory that is not in the state
the backend remembers (the pod was replaced, another devreg wrote to it, a
build was stopped half-way) is answered by a full send.

buildkitd pushes to the registry beside it (``localhost:<port>`` inside the
pod); the repository path is the rewritten one, so nodes pull the same image
as ``localhost:<nodePort>/<path>:<tag>``.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from hookpkg import buildctl as buildctl_mod
from hookpkg.buildprogress import Progress
from hookpkg.reference import split_domain
from watcher.build.backends import BuildCancelled, BuildError, BuildRequest, BuildResult
from watcher.build.buildkit import context as context_mod
from watcher.build.buildkit.transport import ExecTransport, Transport
from watcher.cluster.kube import official_client

Log = Callable[[str], None]

STALE_EXIT = 75
STALE = "devreg: work directory is not as expected"
UNPACKED = "devreg: context unpacked"
TOKEN = ".devreg-token"
FULL = "-"
# ``$0`` work directory, ``$1`` the tar's size, ``$2`` the token the directory
# must hold for a partial send (``-``: full send, empty it first), ``$3`` the
# token to leave, then the buildctl command. The old token goes before tar
# runs, so an unpack that is cut short leaves a directory no partial send
# will trust. ``head -c`` ends tar's input after exactly its bytes: the exec
# stream can only signal the end of stdin with the v5 protocol, and tar
# (busybox's and GNU's) reads on past the archive's end marker until EOF.
UNPACK_AND_BUILD = (
    'set -e; d="$0"; n="$1"; p="$2"; t="$3"; shift 3; '
    f'if [ "$p" = {FULL} ]; then rm -rf "$d"; mkdir -p "$d"; '
    f'elif [ "$(cat "$d/{TOKEN}" 2>/dev/null)" != "$p" ]; then '
    f'echo "{STALE}"; exit {STALE_EXIT}; fi; '
    f'rm -f "$d/{TOKEN}"; head -c "$n" | tar -x -f - -C "$d"; '
    f'echo "$t" >"$d/{TOKEN}"; echo "{UNPACKED}"; exec "$@"'
)
NOT_FOUND = 127
_STEP = re.compile(r"\[[^\]]*\]")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def build_script(
    workdir: str, size: int, buildctl_argv: tuple[str, ...], *, expect: str = FULL, leave: str
) -> tuple[str, ...]:
    return ("sh", "-c", UNPACK_AND_BUILD, workdir, str(size), expect, leave, *buildctl_argv)


def push_name(push_host: str, repository: str, tag: str) -> str:
    """The name buildkitd pushes: the request's repository path under the
    registry host as buildkitd reaches it."""
    _, path = split_domain(repository)
    return f"{push_host}/{path}:{tag}"


def workdir_name(request: BuildRequest) -> str:
    """Stable per image and project: the key for people reading ``/tmp``, the
    hash so that two projects with an image ``app`` do not share one."""
    where = hashlib.sha256(f"{request.context}\0{request.dockerfile}".encode()).hexdigest()[:10]
    return f"devreg-ctx-{_UNSAFE.sub('-', request.image.key)[:40]}-{where}"


class _Mirror(NamedTuple):
    token: str
    manifest: context_mod.Manifest


class BuildkitBackend:
    """Builds with a buildkitd reached through ``transport`` and pushes to
    ``push_host`` (the registry as buildkitd sees it)."""

    name = "buildkit"

    def __init__(
        self,
        transport: Transport,
        *,
        push_host: str,
        addr: str | None = None,
        buildctl: str = "buildctl",
        insecure: bool = True,
    ) -> None:
        self.transport = transport
        self.push_host = push_host
        self.addr = addr
        self.buildctl = buildctl
        self.insecure = insecure
        # What went to this buildkitd under which mtime (see context.py).
        self.ledger = context_mod.MtimeLedger()
        self.pack_cache = context_mod.PackCache()
        # Per work directory, what it holds. One build per image at a time
        # (the pipeline's rule), so each entry has one user; dict operations
        # on distinct keys need no lock.
        self._mirrors: dict[str, _Mirror] = {}

    def close(self) -> None:
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()

    def invocation(
        self, request: BuildRequest, workdir: str, dockerfile_name: str
    ) -> buildctl_mod.Invocation:
        return buildctl_mod.Invocation(
            workdir=workdir,
            dockerfile_name=dockerfile_name,
            image=push_name(self.push_host, request.repository, request.tag),
            build_args=dict(request.build_args),
            target=request.target,
            insecure=self.insecure,
            addr=self.addr,
            buildctl=self.buildctl,
        )

    def build(self, request: BuildRequest, *, log: Log, cancel: threading.Event) -> BuildResult:
        started = time.monotonic()
        if cancel.is_set():
            raise BuildCancelled()
        name = workdir_name(request)
        workdir = f"{self.transport.workroot.rstrip('/')}/{name}"
        # Not trusted again until this build's unpack is confirmed.
        mirror = self._mirrors.pop(name, None)
        while True:
            packed = self._pack(request, mirror)
            token = uuid.uuid4().hex
            progress = Progress()
            seen: set[str] = set()

            def show(line: str, progress: Progress = progress, seen: set[str] = seen) -> None:
                if line in (STALE, UNPACKED):
                    seen.add(line)
                    return
                shown = progress.feed(line)
                if shown is not None:
                    log(shown)

            what = "all" if packed.full else "changes"
            log(
                f"sending {what}: {packed.files} of {packed.total_files} files, "
                f"{packed.size / 1e6:.1f} MB, to buildkitd ({self.transport.name})"
            )
            inv = self.invocation(request, workdir, packed.dockerfile_name)
            argv = buildctl_mod.build_argv(inv)
            done = self.transport.run(
                build_script(
                    workdir,
                    len(packed.data),
                    argv,
                    expect=FULL if packed.full or mirror is None else mirror.token,
                    leave=token,
                ),
                stdin=packed.data,
                log=show,
                cancel=cancel,
            )
            if done.returncode == STALE_EXIT and STALE in seen and mirror is not None:
                log("the work directory in buildkitd is not as devreg left it: sending all")
                mirror = None
                continue
            break
        if UNPACKED in seen:
            self._mirrors[name] = _Mirror(token, packed.manifest)
        if done.cancelled:
            raise BuildCancelled()
        tail = tuple(progress.tail) or done.tail
        if done.returncode != 0:
            raise BuildError(self._failure(request, done.returncode, progress), tail)
        return BuildResult(
            request.reference,
            time.monotonic() - started,
            pushed=True,
            image_id=progress.digest,
        )

    def _pack(self, request: BuildRequest, mirror: _Mirror | None) -> context_mod.Packed:
        try:
            return context_mod.pack(
                request.context,
                request.files,
                request.dockerfile,
                ledger=self.ledger,
                cache=self.pack_cache,
                previous=mirror.manifest if mirror is not None else None,
            )
        except OSError as e:
            raise BuildError(f"cannot read the build context of {request.image.key!r}: {e}") from e

    def _failure(self, request: BuildRequest, code: int, progress: Progress) -> str:
        where = f"in-cluster build of image {request.image.key!r}"
        if progress.error:
            # ``[base 3/4]`` is enough: buildctl's error names the command.
            m = _STEP.match(progress.failed_step or "")
            step = f" at step {m.group(0)}" if m else ""
            return f"{where} failed{step}: {progress.error}"
        if code == NOT_FOUND:
            return (
                f"{where} failed: `{self.buildctl}` (or sh/tar) is missing in the buildkitd "
                f"environment ({self.transport.name})"
            )
        return f"{where} failed: buildctl exited with {code}"


def from_context(
    context: str | None, *, namespace: str, registry_name: str, registry_port: int
) -> BuildkitBackend:
    """:func:`in_cluster_backend` with the official client of a kubeconfig
    context (``None``: the current one); ``close()`` releases it."""
    from kubernetes import client

    # devreg's credentials (one exec plugin cache per user) and proxy.
    core = client.CoreV1Api(official_client(context).api_client)
    transport = ExecTransport(
        core, namespace=namespace, selector=f"app={registry_name}", owns_client=True
    )
    return BuildkitBackend(transport, push_host=f"localhost:{registry_port}")


def in_cluster_backend(
    core_api: Any, *, namespace: str, registry_name: str, registry_port: int
) -> BuildkitBackend:
    """The backend for a registry pod made by devreg (SPEC §3): the
    ``buildkitd`` container of pod ``app=<name>``, pushing to the registry
    container on ``localhost:<port>`` of the same pod. buildctl finds
    buildkitd through the image's ``$BUILDKIT_HOST``."""
    transport = ExecTransport(core_api, namespace=namespace, selector=f"app={registry_name}")
    return BuildkitBackend(transport, push_host=f"localhost:{registry_port}")
