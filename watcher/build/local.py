"""Building with the local Docker engine, and delivering from it.

The build goes through a BuildKit-capable Docker CLI (SPEC §6): the docker
SDK's ``images.build`` only drives the classic builder, which refuses
``RUN --mount=type=cache``, the very thing that makes dev rebuilds fast. The
SDK does the rest (ping, inspect, tag, push with per-layer progress).

The CLI is the user's: ``DEVREG_DOCKER`` when set, else ``docker`` on
``PATH``, checked once for BuildKit (the buildx plugin, or a CLI from before
23.0 with BuildKit built in); one that cannot is an error naming what it
lacks and the override, never a silent fallback to the classic builder.

Commands are tuples from small pure functions (``build_argv``) run through
:mod:`watcher.proc`. Loading into kind is :mod:`watcher.build.kind`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hookpkg.errors import FatalError
from watcher import proc
from watcher.build.backends import BuildCancelled, BuildError, BuildRequest, BuildResult

Log = Callable[[str], None]
OVERRIDE = "DEVREG_DOCKER"
_VERSION = re.compile(r"version (\d+)\.(\d+)")
# BuildKit came to `docker build` in 18.09 (DOCKER_BUILDKIT=1); from 23.0 on,
# `docker build` uses BuildKit only through the buildx plugin.
BUILDKIT_BUILT_IN = ((18, 9), (23, 0))


@dataclass(frozen=True)
class DockerCli:
    path: str
    buildx: bool  # ``docker buildx build`` (else ``docker build`` with BuildKit built in)
    version: str


def _cli_version(path: str) -> tuple[int, int] | None:
    try:
        done = proc.run((path, "--version"), grace=0.5)
    except OSError:
        return None
    m = _VERSION.search("\n".join(done.tail))
    return (int(m.group(1)), int(m.group(2))) if done.ok and m else None


def _has_buildx(path: str) -> bool:
    try:
        return proc.run((path, "buildx", "version"), grace=0.5).ok
    except OSError:
        return False


def buildkit_cli(env: Mapping[str, str] | None = None) -> DockerCli:
    """The Docker CLI devreg builds with: ``$DEVREG_DOCKER`` (a path or a name on
    ``PATH``), else ``docker`` on ``PATH``; raises :class:`FatalError` saying
    what is missing when it cannot run BuildKit builds."""
    env = os.environ if env is None else env
    override = env.get(OVERRIDE)
    where = f"{OVERRIDE}={override}" if override else "`docker` on PATH"
    path = shutil.which(override or "docker", path=env.get("PATH"))
    if path is None:
        raise FatalError(
            f"no Docker CLI: {where} {'is not an executable' if override else 'is missing'}. "
            "devreg builds images with the Docker CLI and BuildKit: install Docker's CLI "
            f"(with the buildx plugin), or set {OVERRIDE} to one"
        )
    version = _cli_version(path)
    if version is None:
        raise FatalError(
            f"{path} ({where}) is not a Docker CLI: `{path} --version` did not print "
            f"'Docker version X.Y'; set {OVERRIDE} to a Docker CLI"
        )
    return choose_cli(path, version, has_buildx=_has_buildx(path), where=where)


def choose_cli(
    path: str, version: tuple[int, int], *, has_buildx: bool, where: str = "`docker` on PATH"
) -> DockerCli:
    """Whether the CLI at ``path`` (``version``, with or without the buildx
    plugin) can run BuildKit builds, and how (pure: the tests' table)."""
    label = f"{version[0]}.{version[1]}"
    if has_buildx:
        return DockerCli(path, True, label)
    oldest, first_without = BUILDKIT_BUILT_IN
    if oldest <= version < first_without:
        return DockerCli(path, False, label)
    if version < oldest:
        why = f"it is older than {oldest[0]}.{oldest[1]}, which brought BuildKit"
        fix = "upgrade it"
    else:
        why = (
            "it has no buildx plugin (`docker buildx version` fails), and since Docker 23.0 "
            "`docker build` runs BuildKit only through buildx"
        )
        fix = (
            "install the buildx plugin (docker-buildx-plugin from Docker's packages, "
            "docker-buildx on Debian and Ubuntu)"
        )
    raise FatalError(
        f"the Docker CLI {path} ({label}, {where}) cannot run BuildKit builds: {why}. "
        f"To fix it, {fix}, or set {OVERRIDE} to a Docker CLI that can"
    )


def build_argv(cli: DockerCli, request: BuildRequest, *, iidfile: Path) -> tuple[str, ...]:
    """The build command (pure, so tests can read it)."""
    argv: list[str] = [cli.path, "buildx", "build", "--load"] if cli.buildx else [cli.path, "build"]
    argv += [
        "--progress=plain",
        "--file",
        str(request.dockerfile),
        "--tag",
        request.reference,
        "--iidfile",
        str(iidfile),
    ]
    for key, value in sorted(request.build_args.items()):
        argv += ["--build-arg", f"{key}={value}"]
    if request.target:
        argv += ["--target", request.target]
    argv.append(str(request.context))
    return tuple(argv)


def build_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["DOCKER_BUILDKIT"] = "1"
    env.setdefault("BUILDKIT_PROGRESS", "plain")
    return env


class Engine:
    """The local Docker engine through the docker SDK (imported lazily)."""

    def __init__(self, timeout: float = 60.0) -> None:
        import docker
        import docker.errors

        try:
            # The SDK asks the engine for its API version here already.
            self.client = docker.from_env(timeout=int(timeout))
        except docker.errors.DockerException as e:
            raise _no_answer(e) from None

    def close(self) -> None:
        self.client.close()

    def ping(self) -> None:
        import docker.errors
        import requests.exceptions

        try:
            self.client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            raise _no_answer(e) from None

    def image_id(self, reference: str) -> str | None:
        import docker.errors

        try:
            info: dict[str, Any] = self.client.api.inspect_image(reference)
        except docker.errors.ImageNotFound:
            return None
        return str(info["Id"])

    def tag(self, source: str, repository: str, tag: str) -> None:
        self.client.api.tag(source, repository, tag)

    def remote_has(self, reference: str) -> bool:
        """Whether a registry holds ``reference`` (asked through the engine,
        so the engine's credentials apply)."""
        import docker.errors

        try:
            self.client.api.inspect_distribution(reference)
        except docker.errors.APIError:
            return False
        return True

    def push(self, repository: str, tag: str, *, log: Log, cancel: threading.Event) -> int:
        """Push with per-layer progress; returns the number of layers sent
        (0 when the registry had them all)."""
        stream = self.client.api.push(repository, tag=tag, stream=True, decode=True)
        return _follow_push(stream, log=log, cancel=cancel)


def _no_answer(error: Exception) -> FatalError:
    return FatalError(f"the Docker engine does not answer ({error}); is dockerd running?")


def _close(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _follow_push(stream: Iterator[dict[str, Any]], *, log: Log, cancel: threading.Event) -> int:
    """Report one line per layer state change (not every progress tick), and
    the byte progress of large layers at most once a second."""
    pushed: set[str] = set()
    last_status: dict[str, str] = {}
    last_progress: dict[str, float] = {}
    try:
        for chunk in stream:
            if cancel.is_set():
                raise BuildCancelled()
            if "error" in chunk:
                raise BuildError(f"push failed: {chunk['error']}")
            layer = str(chunk.get("id", ""))
            status = str(chunk.get("status", ""))
            if (
                not layer
                or layer.startswith("latest")
                or ":" in status
                and not chunk.get("progressDetail")
            ):
                if status:
                    log(status)
                continue
            if status == "Pushing":
                detail = chunk.get("progressDetail") or {}
                now = time.monotonic()
                if now - last_progress.get(layer, 0.0) >= 1.0 and detail.get("total"):
                    last_progress[layer] = now
                    done, total = _mb(detail.get("current", 0)), _mb(detail["total"])
                    log(f"layer {layer}: pushing {done}/{total}")
                pushed.add(layer)
                continue
            if status == "Pushed":
                pushed.add(layer)
            if last_status.get(layer) != status:
                last_status[layer] = status
                log(f"layer {layer}: {status.lower()}")
    finally:
        _close(stream)
    return len(pushed)


def _mb(n: Any) -> str:
    return f"{float(n) / 1e6:.1f} MB"


class LocalDockerBackend:
    """Builds with the local engine's BuildKit through the Docker CLI."""

    name = "local-docker"

    def __init__(self, engine: Engine, cli: DockerCli) -> None:
        self.engine = engine
        self.cli = cli

    def build(self, request: BuildRequest, *, log: Log, cancel: threading.Event) -> BuildResult:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="devreg-build-") as tmp:
            iidfile = Path(tmp) / "iid"
            argv = build_argv(self.cli, request, iidfile=iidfile)
            done = proc.run(argv, log=log, cancel=cancel, env=build_env())
            if done.cancelled:
                raise BuildCancelled()
            if not done.ok:
                raise BuildError(
                    f"docker build failed (exit {done.returncode}) for image {request.image.key!r}",
                    done.tail,
                )
            built_id = iidfile.read_text().strip() if iidfile.exists() else None
        return BuildResult(request.reference, time.monotonic() - started, image_id=built_id)
