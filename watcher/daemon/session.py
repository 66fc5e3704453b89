"""What ``devreg build`` and ``devreg watch`` share: read the config, decide
each image's path, reach the registry and the engine, make a pipeline."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookpkg import plan as plan_mod
from hookpkg.config import Config
from hookpkg.delivery import Cluster, classify_cluster
from hookpkg.errors import FatalError
from hookpkg.plan import ImagePlan
from hookpkg.project import load_project
from watcher import console
from watcher.build.backends import BuildBackend
from watcher.build.local import Engine, LocalDockerBackend, buildkit_cli
from watcher.build.pipeline import Pipeline
from watcher.daemon.state import StateDir

if TYPE_CHECKING:  # imported when a build needs them: they bring the kubernetes client
    from watcher.build.buildkit.backend import BuildkitBackend
    from watcher.cluster.pullprobe import BackgroundProbe
    from watcher.cluster.registry import RegistryEndpoint

Log = Callable[[str], None]


def stderr_log(line: str) -> None:
    console.progress(line)


@dataclass(frozen=True)
class Profiles:
    """The DevSpace profiles a command loads its config with: ``-p`` (in order),
    and whether ``activation`` turns others on. The watcher keeps them for every
    reload of an edited config."""

    requested: tuple[str, ...] = ()
    activation: bool = True

    def flags(self) -> list[str]:
        """The command-line flags that choose the same (for the background watcher)."""
        argv = [flag for name in self.requested for flag in ("--profile", name)]
        return argv if self.activation else [*argv, "--disable-profile-activation"]


def read_config(
    path: Path, *, log: Log | None = None, profiles: Profiles = Profiles()
) -> Config | None:
    """Load and validate; diagnostics go to ``log`` (default: stderr, shown
    even with ``-q``). None when invalid."""
    project = load_project(path, profiles=profiles.requested, activation=profiles.activation)
    console.diagnostics(project.diagnostics, loaded=project.config is not None, log=log)
    return project.config


def require_config(
    path: Path, *, log: Log | None = None, profiles: Profiles = Profiles()
) -> Config:
    config = read_config(path, log=log, profiles=profiles)
    if config is None:
        raise FatalError(f"{path}: the configuration has errors (see above)")
    if not config.images:
        raise FatalError(f"{path}: no images to build")
    return config


@dataclass
class Session:
    """The one place that gathers effects for a pipeline: the push check, the
    registry (deployed or the cluster's), the local engine and CLI, the in-cluster
    builder. They live as long as the session; the plan itself is pure
    (:mod:`hookpkg.plan`)."""

    context: str | None
    namespace: str | None
    timeout: float
    log: Log
    cluster: Cluster = field(init=False)
    engine: Engine | None = None
    backend: BuildBackend | None = None
    in_cluster: BuildkitBackend | None = None
    endpoint: RegistryEndpoint | None = None
    # The watcher's: where the pull probe caches its result (None: no probe, as
    # for ``devreg build``, whose pass must not wait for pods), and whom it tells.
    probe_dir: Path | None = None
    on_probe: Callable[[], None] | None = None
    probe: BackgroundProbe | None = None

    def __post_init__(self) -> None:
        self.cluster = classify_cluster(self.context)

    def plan(self, config: Config) -> dict[str, ImagePlan]:
        """Each image's plan, with the push check run and the registry reached when a
        path needs them."""
        from watcher.cluster.registry import ensure_registry, plan_delivery

        # The KEP-1755 registry is looked up by ``ensure_registry`` itself; asking
        # here too would be a second API call for the same answer.
        paths = plan_delivery(
            config, self.cluster, context=self.context, log=self.log, ask_cluster=False
        ).paths
        if plan_mod.needs_registry(paths) and self.endpoint is None:
            self.endpoint = ensure_registry(
                config,
                context=self.context,
                namespace=self.namespace,
                timeout=self.timeout,
                log=self.log,
            )
            self._start_probe()
        registry = None
        if self.endpoint is not None:
            registry = plan_mod.Registry(
                self.endpoint.host, self.endpoint.source, self.endpoint.namespace
            )
        return plan_mod.plan_images(config, self.cluster, paths, registry)

    def _start_probe(self) -> None:
        """The pull probe, once per session, beside the builds (never before them)."""
        if self.probe_dir is None or self.probe is not None or self.endpoint is None:
            return
        if not self.endpoint.reachable:
            return
        from watcher.cluster.pullprobe import BackgroundProbe

        self.probe = BackgroundProbe(
            self.endpoint, self.probe_dir, log=self.log, on_done=self.on_probe
        )

    def probe_status(self) -> dict[str, Any] | None:
        return self.probe.as_json() if self.probe is not None else None

    def pipeline(self, config: Config, state: StateDir) -> Pipeline:
        plans = self.plan(config)
        in_cluster = self._in_cluster_backend(config, plans)
        if plan_mod.needs_engine(plans) and self.engine is None:
            cli = buildkit_cli()  # before the engine: a missing CLI is the first thing to fix
            self.engine = Engine()  # asks the engine for its API version: it answers
            mode = "docker buildx build" if cli.buildx else "docker build (BuildKit built in)"
            self.log(f"building with {cli.path} {cli.version}: {mode}")
            self.backend = LocalDockerBackend(self.engine, cli)
        return Pipeline(
            config,
            routes=plans,
            endpoint=self.endpoint,
            engine=self.engine,
            backend=self.backend,
            state=state,
            log=self.log,
            in_cluster=in_cluster,
        )

    def _in_cluster_backend(
        self, config: Config, plans: Mapping[str, ImagePlan]
    ) -> BuildkitBackend | None:
        """The registry pod's ``buildkitd``, for the images the plan builds there."""
        if not any(p.builder == "in-cluster" for p in plans.values()):
            return None
        assert self.endpoint is not None and self.endpoint.namespace is not None
        lr = config.local_registry
        if self.in_cluster is None:
            from watcher.build.buildkit.backend import from_context

            namespace = self.endpoint.namespace
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
