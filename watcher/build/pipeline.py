"""One image, one pass: tag → skip if present → build → deliver → publish.

Used by ``devreg build`` (each image once) and by the watcher (again on every
change). Which way each image goes, under which name and who builds it is decided
before, once (:mod:`hookpkg.plan`, gathered by ``watcher.daemon.session``); building
goes through a :class:`~watcher.build.backends.BuildBackend`.
"""

from __future__ import annotations

import random
import re
import string
import threading
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol

from hookpkg.config import Config, Image
from hookpkg.errors import FatalError
from hookpkg.plan import ImagePlan
from hookpkg.project import ENV_FILE
from hookpkg.variables import Delivered, all_variables, image_variables, valid_value
from watcher.build.backends import BuildBackend, BuildCancelled, BuildError, BuildRequest
from watcher.build.contenttag import Snapshot, content_tag
from watcher.build.kind import load as kind_load
from watcher.build.local import Engine
from watcher.cluster import registryhttp
from watcher.daemon import dotenv
from watcher.daemon.state import StateDir

Log = Callable[[str], None]
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


class Endpoint(Protocol):
    """What the pipeline needs of ``watcher.cluster.registry.RegistryEndpoint``."""

    host: str  # in image names and variables: ``localhost:31234``
    push_host: str  # where this machine pushes

    def close(self) -> None: ...


# Where one image goes and under which name: the plan decided in hookpkg.plan.
Route = ImagePlan


class Outcome(NamedTuple):
    key: str
    state: str  # "built" | "pushed" | "up-to-date" | "failed" | "cancelled"
    tag: str | None
    reference: str | None
    seconds: float
    error: str | None = None
    tail: tuple[str, ...] = ()
    built: bool = False
    layers_pushed: int = 0


# The engine's words for a push that never reached the registry (Go's net errors).
_UNREACHED = re.compile(
    r"connection refused|connection reset by peer|broken pipe|i/o timeout|no route to host|: EOF"
)
REPUSH_WAIT = 15.0


def registry_has(push_host: str, repository: str, tag: str, *, timeout: float = 5.0) -> bool | None:
    """HEAD the manifest on a plain-HTTP loopback registry: True/False, or
    None when the registry does not answer."""
    path = repository.split("/", 1)[1] if "/" in repository else repository
    return registryhttp.manifest_present(
        push_host, path, tag, accept=MANIFEST_TYPES, timeout=timeout
    )


def _random_tag(pattern: str) -> str:
    return "".join(random.choice(string.ascii_lowercase) if c == "#" else c for c in pattern)


class Pipeline:
    def __init__(
        self,
        config: Config,
        *,
        routes: Mapping[str, Route],
        endpoint: Endpoint | None,
        engine: Engine | None,
        backend: BuildBackend | None,
        state: StateDir,
        log: Log,
        kind: str = "kind",
        in_cluster: BuildBackend | None = None,
    ) -> None:
        self.config = config
        self.routes = dict(routes)
        self.endpoint = endpoint
        self.engine = engine
        self.backend = backend
        # ``localbuild: false``: images bound for the deployed registry are
        # built by its buildkitd sidecar, which pushes them itself; no local
        # engine is involved for them (SPEC §3, §6).
        self.in_cluster = in_cluster
        self.state = state
        self.log = log
        self.kind = kind
        self.env_path = config.directory / ENV_FILE
        self._publish = threading.Lock()

    # --- tags ----------------------------------------------------------------

    def content_of(self, key: str, index: Snapshot) -> str:
        image = self.config.images[key]
        try:
            dockerfile_bytes = image.dockerfile.read_bytes()
        except OSError as e:
            raise BuildError(
                f"cannot read the Dockerfile {image.dockerfile}: {e.strerror}"
            ) from None
        return content_tag(
            dockerfile_bytes=dockerfile_bytes,
            context_digest=index.digest(),
            build_args=image.build_args,
            target=image.target,
        )

    def tag_for(self, key: str, content: str) -> str:
        image = self.config.images[key]
        if not image.tags:
            return content
        previous = self.state.read_delivered().get(key, {})
        if previous.get("content") == content and previous.get("tag"):
            return previous["tag"]  # same inputs: keep the (maybe random) tag
        return _random_tag(image.tags[0])

    # --- presence --------------------------------------------------------------

    def present(self, route: Route, tag: str, content: str) -> bool | None:
        """Whether the cluster already has this image (None: cannot tell)."""
        reference = f"{route.repository}:{tag}"
        image = self.config.images[route.key]
        if image.tags:
            # A configured tag says nothing about content: trust it only for
            # the content devreg itself delivered under it.
            record = self.state.read_delivered().get(route.key, {})
            if record.get("content") != content or record.get("tag") != tag:
                return False
        if route.path == "local-registry":
            assert self.endpoint is not None
            return registry_has(self.endpoint.push_host, route.repository, tag)
        engine = self._engine()
        if route.path == "own-registry":
            return engine.remote_has(reference)
        if route.path == "kind-load":
            # kind itself asks each node's containerd whether it has the image and
            # imports it only where it is missing: the load decides (after
            # `kind delete/create cluster` the nodes lost what devreg delivered).
            return False
        return engine.image_id(reference) is not None

    # --- one pass --------------------------------------------------------------

    def run(
        self,
        key: str,
        index: Snapshot,
        *,
        cancel: threading.Event,
        is_current: Callable[[], bool] = lambda: True,
        log: Log | None = None,
    ) -> Outcome:
        log = log or self.log
        started = time.monotonic()
        route = self.routes[key]
        image = self.config.images[key]
        tag: str | None = None
        reference: str | None = None
        try:
            content = self.content_of(key, index)
            tag = self.tag_for(key, content)
            reference = f"{route.repository}:{tag}"
            if self.present(route, tag, content):
                self._publish_result(key, route, tag, content, is_current)
                return Outcome(key, "up-to-date", tag, reference, time.monotonic() - started)
            built = False
            backend = self.backend_for(route)
            if backend is self.in_cluster or self._engine().image_id(reference) is None:
                log(f"building {reference}")
                request = self._request(image, route, tag, index)
                result = backend.build(request, log=log, cancel=cancel)
                built = True
                if result.pushed:
                    self._publish_result(key, route, tag, content, is_current)
                    return Outcome(
                        key, "built", tag, reference, time.monotonic() - started, built=True
                    )
            if cancel.is_set():
                raise BuildCancelled()
            layers = self._deliver(route, tag, reference, cancel=cancel, log=log)
            self._publish_result(key, route, tag, content, is_current)
            if layers is None and not built:  # kind: every node had it already
                return Outcome(key, "up-to-date", tag, reference, time.monotonic() - started)
            state = "built" if built else "pushed"
            return Outcome(
                key,
                state,
                tag,
                reference,
                time.monotonic() - started,
                built=built,
                layers_pushed=layers or 0,
            )
        except BuildCancelled:
            return Outcome(key, "cancelled", tag, reference, time.monotonic() - started)
        except FatalError as e:
            tail = e.tail if isinstance(e, BuildError) else ()
            return Outcome(key, "failed", tag, reference, time.monotonic() - started, str(e), tail)
        except Exception as e:  # the engine went away, a registry hiccup…
            msg = f"{type(e).__name__}: {e}"
            return Outcome(key, "failed", tag, reference, time.monotonic() - started, msg)

    def backend_for(self, route: Route) -> BuildBackend:
        if route.builder == "in-cluster":
            if self.in_cluster is None:
                raise FatalError(f"image {route.key!r} builds in the cluster, but no buildkitd")
            return self.in_cluster
        if self.backend is None:
            raise FatalError(f"no build backend for image {route.key!r}")
        return self.backend

    def _engine(self) -> Engine:
        if self.engine is None:
            raise FatalError("this image needs the local Docker engine, which is not connected")
        return self.engine

    def _request(self, image: Image, route: Route, tag: str, index: Snapshot) -> BuildRequest:
        return BuildRequest(
            image=image,
            repository=route.repository,
            tag=tag,
            context=image.context,
            files=index.files(),
            dockerfile=image.dockerfile,
            build_args=dict(image.build_args),
            target=image.target,
            push=route.path in ("local-registry", "own-registry"),
        )

    def _deliver(
        self, route: Route, tag: str, reference: str, *, cancel: threading.Event, log: Log
    ) -> int | None:
        """Layers pushed; None when nothing had to move (kind: every node had it)."""
        if route.path in ("local-registry", "own-registry"):
            log(f"pushing {reference}")
            return self._push(route, tag, cancel=cancel, log=log)
        if route.path == "kind-load":
            assert route.kind_cluster is not None
            log(f"kind load docker-image --name {route.kind_cluster} {reference}")
            nodes = kind_load(route.kind_cluster, reference, log=log, cancel=cancel, kind=self.kind)
            return 0 if nodes else None
        return 0

    def _push(self, route: Route, tag: str, *, cancel: threading.Event, log: Log) -> int:
        """The engine's push; one more when the deployed registry could not be reached
        and answers again within ``REPUSH_WAIT`` (its node port reprogrammed by
        kube-proxy, its pod replaced: a moment's gap is no reason to fail a build)."""
        engine = self._engine()
        try:
            return engine.push(route.repository, tag, log=log, cancel=cancel)
        except BuildError as e:
            if route.path != "local-registry" or self.endpoint is None:
                raise
            if not _UNREACHED.search(str(e)):
                raise
            host = self.endpoint.push_host
            log(f"{e}; pushing again once {host} answers (waiting up to {REPUSH_WAIT:g} s)")
            if registryhttp.wait_v2(host, timeout=REPUSH_WAIT, cancel=cancel) is not None:
                raise
        if cancel.is_set():
            raise BuildCancelled()
        return engine.push(route.repository, tag, log=log, cancel=cancel)

    # --- publication -------------------------------------------------------------

    def _publish_result(
        self, key: str, route: Route, tag: str, content: str, is_current: Callable[[], bool]
    ) -> None:
        with self._publish:
            # A newer change of this image arrived meanwhile: this result is
            # stale and must not replace what the newest files will give.
            if not is_current():
                raise BuildCancelled()
            record = {
                "repository": route.repository,
                "tag": tag,
                "content": content,
                "path": route.path,
            }
            if route.kind_cluster:
                record["kind"] = route.kind_cluster
            delivered = self.state.record_delivered(key, record)
            self._write_env(delivered)

    def variables(self, delivered: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, str]:
        delivered = self.state.read_delivered() if delivered is None else delivered
        values: dict[str, Delivered] = {}
        for key in self.config.images:
            record = delivered.get(key)
            route = self.routes.get(key)
            # A record for another registry (the node port changed) is stale.
            if record is None or route is None or record.get("repository") != route.repository:
                continue
            value = Delivered(str(record["repository"]), str(record.get("tag", "")))
            bad = [(n, v) for n, v in image_variables(key, value).items() if not valid_value(v)]
            if bad:
                # One image's refused value keeps only that image out of .devreg.env.
                name, text = bad[0]
                self.log(
                    f"[{key}] not written to {ENV_FILE}: {name}={text!r} has characters outside "
                    "[A-Za-z0-9._:/@-] (the file must be safe to source unquoted)"
                )
                continue
            values[key] = value
        uses_registry = any(r.path == "local-registry" for r in self.routes.values())
        registry = self.endpoint.host if (self.endpoint is not None and uses_registry) else None
        return all_variables(values, registry=registry, image_count=len(self.config.images))

    def _write_env(self, delivered: Mapping[str, Mapping[str, str]]) -> None:
        dotenv.write(self.env_path, self.variables(delivered), profiles=self.config.profiles)

    def publish(self) -> None:
        with self._publish:
            self._write_env(self.state.read_delivered())
