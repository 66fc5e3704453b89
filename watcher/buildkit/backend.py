"""The in-cluster build backend (``localbuild: false``, SPEC §3, §6).

One build is: pack the context and the Dockerfile into a tar
(:mod:`.context`), send it through a transport to a fresh work directory in
the buildkitd environment where ``tar`` unpacks it and ``buildctl`` builds and
pushes (:mod:`.buildctl`) in the same command, read the progress
(:mod:`.progress`), then remove the work directory. One command, not three,
because each command is a round trip to the API server on the exec transport.

buildkitd pushes to the registry beside it (``localhost:<port>`` inside the
pod); the repository path is the rewritten one, so nodes pull the same image
as ``localhost:<nodePort>/<path>:<tag>``.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from hookpkg.reference import split_domain
from watcher import proc
from watcher.backends import BuildCancelled, BuildError, BuildRequest, BuildResult
from watcher.buildkit import buildctl as buildctl_mod
from watcher.buildkit import context as context_mod
from watcher.buildkit.progress import Progress
from watcher.buildkit.transport import ExecTransport, Transport

Log = Callable[[str], None]

# ``$0`` is the work directory, ``$1`` the tar's size, the rest the buildctl
# command. ``head -c`` ends the tar's input after exactly its bytes: the exec
# stream can only signal the end of stdin with the v5 protocol, and tar
# (busybox's and GNU's) reads on past the archive's end marker until EOF. The
# script removes the work directory itself (one round trip, not two); when it
# is stopped or fails early the backend does.
UNPACK_AND_BUILD = (
    'set -e; mkdir -p "$0"; head -c "$1" | tar -x -f - -C "$0"; shift; set +e; '
    '"$@"; r=$?; rm -rf "$0"; exit "$r"'
)
NOT_FOUND = 127
_STEP = re.compile(r"\[[^\]]*\]")


def build_script(workdir: str, size: int, buildctl_argv: tuple[str, ...]) -> tuple[str, ...]:
    return ("sh", "-c", UNPACK_AND_BUILD, workdir, str(size), *buildctl_argv)


def push_name(push_host: str, repository: str, tag: str) -> str:
    """The name buildkitd pushes: the request's repository path under the
    registry host as buildkitd reaches it."""
    _, path = split_domain(repository)
    return f"{push_host}/{path}:{tag}"


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
        try:
            packed = context_mod.pack(
                request.context, request.files, request.dockerfile, ledger=self.ledger
            )
        except OSError as e:
            raise BuildError(f"cannot read the build context of {request.image.key!r}: {e}") from e
        workdir = f"{self.transport.workroot.rstrip('/')}/devreg-build-{uuid.uuid4().hex[:12]}"
        inv = self.invocation(request, workdir, packed.dockerfile_name)
        progress = Progress()

        def show(line: str) -> None:
            shown = progress.feed(line)
            if shown is not None:
                log(shown)

        log(
            f"sending context ({packed.files} files, {packed.size / 1e6:.1f} MB) to buildkitd "
            f"({self.transport.name})"
        )
        done: proc.Completed | None = None
        try:
            done = self.transport.run(
                build_script(workdir, len(packed.data), buildctl_mod.build_argv(inv)),
                stdin=packed.data,
                log=show,
                cancel=cancel,
            )
        finally:
            if done is None or not done.ok:
                # Never cancelled: a stopped build must not leave its context behind.
                self.transport.run(("rm", "-rf", workdir))
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
            log_tail=tail,
        )

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


def in_cluster_backend(
    core_api: Any, *, namespace: str, registry_name: str, registry_port: int
) -> BuildkitBackend:
    """The backend for a registry pod made by devreg (SPEC §3): the
    ``buildkitd`` container of pod ``app=<name>``, pushing to the registry
    container on ``localhost:<port>`` of the same pod. buildctl finds
    buildkitd through the image's ``$BUILDKIT_HOST``."""
    transport = ExecTransport(core_api, namespace=namespace, selector=f"app={registry_name}")
    return BuildkitBackend(transport, push_host=f"localhost:{registry_port}")
