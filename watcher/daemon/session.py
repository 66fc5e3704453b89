"""What ``devreg build`` and ``devreg watch`` share: read the config, decide
each image's path, reach the registry and the engine, make a pipeline."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hookpkg.config import Config
from hookpkg.delivery import Cluster, classify_cluster
from hookpkg.errors import FatalError
from hookpkg.project import load_project
from watcher.build.backends import BuildBackend
from watcher.build.local import DockerCli, Engine, LocalDockerBackend, find_buildkit_cli
from watcher.build.pipeline import Endpoint, Pipeline, connect_registry, plan_routes, plan_words
from watcher.daemon.state import StateDir

if TYPE_CHECKING:  # imported when a build needs it: it brings the kubernetes client
    from watcher.build.buildkit.backend import BuildkitBackend

Log = Callable[[str], None]


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def read_config(path: Path, *, log: Log = stderr_log) -> Config | None:
    """Load and validate; diagnostics go to ``log``. None when invalid."""
    project = load_project(path)
    config, diagnostics = project.config, project.diagnostics
    for d in diagnostics:
        if d.severity != "note" or config is None:
            log(d.format())
    return config


def require_config(path: Path, *, log: Log = stderr_log) -> Config:
    config = read_config(path, log=log)
    if config is None:
        raise FatalError(f"{path}: the configuration has errors (see above)")
    if not config.images:
        raise FatalError(f"{path}: no images to build")
    return config


@dataclass
class Session:
    """The long-lived parts: one engine, one CLI, the registry endpoint."""

    context: str | None
    namespace: str | None
    timeout: float
    log: Log
    cluster: Cluster = field(init=False)
    engine: Engine | None = None
    cli: DockerCli | None = None
    backend: BuildBackend | None = None
    in_cluster: BuildkitBackend | None = None
    endpoint: Endpoint | None = None

    def __post_init__(self) -> None:
        self.cluster = classify_cluster(self.context)

    def pipeline(self, config: Config, state: StateDir) -> Pipeline:
        words = plan_words(
            config, self.cluster, context=self.context, namespace=self.namespace, log=self.log
        )
        if any(w == "local-registry" for w in words.values()) and self.endpoint is None:
            self.endpoint = connect_registry(
                config,
                context=self.context,
                namespace=self.namespace,
                timeout=self.timeout,
                log=self.log,
            )
        in_cluster = self._in_cluster_backend(config)
        needs_engine = any(
            not (w == "local-registry" and in_cluster is not None) for w in words.values()
        )
        if needs_engine and self.engine is None:
            self.engine = Engine()
            self.engine.ping()
            self.cli = find_buildkit_cli()
            if self.cli is not None:
                mode = (
                    "docker buildx build" if self.cli.buildx else "docker build (BuildKit built in)"
                )
                self.log(f"building with {self.cli.path} {self.cli.version}: {mode}")
            self.backend = LocalDockerBackend(self.engine, self.cli, log=self.log)
        routes = plan_routes(config, words, self.cluster, self.endpoint)
        return Pipeline(
            config,
            routes=routes,
            endpoint=self.endpoint,
            engine=self.engine,
            backend=self.backend,
            state=state,
            log=self.log,
            in_cluster=in_cluster,
        )

    def _in_cluster_backend(self, config: Config) -> BuildkitBackend | None:
        """``localbuild: false`` builds in the ``buildkitd`` sidecar of the
        registry devreg deployed. A KEP-1755 registry has no sidecar, so its
        images are built by the local engine."""
        lr = config.local_registry
        deployed = getattr(self.endpoint, "source", None) == "deployed"
        if lr.localbuild or not deployed:
            return None
        namespace = getattr(self.endpoint, "namespace", None) or lr.namespace or "default"
        if self.in_cluster is None:
            from watcher.build.buildkit.backend import from_context

            self.in_cluster = from_context(
                self.context, namespace=namespace, registry_name=lr.name, registry_port=lr.port
            )
            self.log(
                f"building in the cluster: buildkitd of {namespace}/{lr.name} (localbuild: false)"
            )
        return self.in_cluster

    def close(self) -> None:
        if self.in_cluster is not None:
            self.in_cluster.close()
            self.in_cluster = None
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None
