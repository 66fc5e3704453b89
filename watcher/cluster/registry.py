"""The registry in the cluster, as the rest of devreg sees it (SPEC §2, §3).

Public API (the watcher calls the first two at start and for ``devreg build``):

``ensure_registry(config, *, context, namespace, timeout, log=..., reach=True,
require_reach=True) -> RegistryEndpoint``
    Use the cluster's KEP-1755 registry when it publishes one; otherwise
    apply the registry's objects (server-side apply, field manager
    ``devreg``), wait until its pod is Ready (``timeout`` seconds) and make it
    reachable from this machine: ``localhost:<nodePort>`` when it answers
    ``GET /v2/``, else a port-forward from ``127.0.0.1:<nodePort>`` kept
    alive until ``endpoint.close()``. ``endpoint.host`` is what images are
    named with and nodes pull (``localhost:31234``); ``endpoint.push_host``
    is where this machine pushes (the same, or ``127.0.0.1:31234`` of the
    forward). Both ways are tried again every 0.05 s until ``GET /v2/``
    answers or ``timeout`` (counted from the start, readiness included) has
    passed; then :class:`RegistryUnreachable` (a ``FatalError``) names every
    address tried, its last error, and what to check. With
    ``require_reach=False`` each way is tried once, without waiting, and an
    unreachable registry is reported in ``endpoint.reach_error`` instead.

``plan_delivery(config, cluster, *, context, namespace=None, checker=None,
log=...) -> DeliveryPlan``
    The path word per image (``plan.paths``), after the push-permission
    check for remote clusters with ``enabled`` unset, and the KEP-1755
    registry (``plan.kep1755``) when a local registry is chosen and the
    cluster publishes one.

``status_info(*, config, context, namespace) -> dict`` and
``format_status(info) -> list[str]``
    The registry half of ``devreg status`` (JSON-able; nothing is changed).

``load_valid_config(path, profiles=..., activation=...) -> Config``
    Read and validate; errors are printed and raise FatalError before any
    API call (an invalid ``localRegistry.image`` never reaches the cluster).

The parts: :mod:`watcher.cluster.kube` (API client), :mod:`watcher.cluster.kep1755`,
:mod:`watcher.cluster.pushcheck`, :mod:`hookpkg.registry_objects` (the objects, pure),
:mod:`watcher.cluster.deploy` (apply, wait, delete), :mod:`watcher.cluster.portforward`.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hookpkg import plan as plan_mod
from hookpkg.config import Config
from hookpkg.delivery import Cluster, PathWord, classify_cluster, delivery_path
from hookpkg.errors import FatalError
from hookpkg.nodehost import registry_host as node_registry_host
from hookpkg.project import load_project
from hookpkg.registry_objects import check_registry_settings
from watcher import console
from watcher.cluster import deploy as deploy
from watcher.cluster.kep1755 import LocalRegistryHosting, read_hosting
from watcher.cluster.kube import DEFAULT_TIMEOUT, Kube
from watcher.cluster.registryhttp import PROBE_TIMEOUT, answers_v2

if TYPE_CHECKING:  # imported lazily: only remote clusters need them
    from watcher.cluster.portforward import Forwarder, PodPortOpener
    from watcher.cluster.pushcheck import PushCheck, PushChecker

Log = Callable[[str], None]
Reach = Literal["localhost", "port-forward", "kep-1755", "unreachable", "not-checked"]


def stderr_log(line: str) -> None:
    console.progress(f"devreg: {line}")


def load_valid_config(
    path: Path, *, profiles: Sequence[str] = (), activation: bool = True
) -> Config:
    """The config with its DevSpace profiles applied (``-p``; ``activation``)."""
    project = load_project(path, profiles=profiles, activation=activation)
    config = project.config
    console.diagnostics(project.diagnostics, loaded=config is not None)
    if config is None:
        raise FatalError(f"{path}: the configuration has errors (see above); nothing was applied")
    return config


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


def registry_namespace(config: Config, namespace: str | None, kube: Kube) -> str:
    """``--namespace``, else ``localRegistry.namespace``, else the context's."""
    check_namespace_flag(namespace)
    return plan_mod.registry_namespace(namespace, config.local_registry, kube.namespace)


def check_namespace_flag(namespace: str | None) -> None:
    if namespace is not None and not _DNS_LABEL.match(namespace):
        raise FatalError(
            f"--namespace {namespace!r} is not a namespace name (lower-case letters, digits "
            "and '-', at most 63, starting and ending with a letter or digit)",
            exit_code=2,
        )


# --- ensure -------------------------------------------------------------------------------------


@dataclass
class RegistryEndpoint:
    host: str  # in image names, variables, and what nodes pull: localhost:31234
    push_host: str  # where this machine pushes
    source: Literal["deployed", "kep-1755"]
    context: str
    server: str
    namespace: str | None = None
    name: str | None = None
    node_port: int | None = None
    workload_kind: str | None = None
    pod: str | None = None  # when it was looked at
    reach: Reach = "not-checked"
    reach_error: str | None = None
    kep1755: LocalRegistryHosting | None = None
    _forwarder: Forwarder | None = field(default=None, repr=False)
    _opener: PodPortOpener | None = field(default=None, repr=False)
    _kube: Kube | None = field(default=None, repr=False)

    @property
    def api(self) -> Kube | None:
        """The API client ``ensure_registry`` used, while the endpoint is open."""
        return self._kube

    @property
    def reachable(self) -> bool:
        return self.reach in ("localhost", "port-forward", "kep-1755")

    def close(self) -> None:
        """Stop the port-forward, if any (idempotent)."""
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        if self._opener is not None:
            self._opener.close()
            self._opener = None
        if self._kube is not None:
            self._kube.close()
            self._kube = None

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "push_host": self.push_host,
            "source": self.source,
            "context": self.context,
            "server": self.server,
            "namespace": self.namespace,
            "name": self.name,
            "node_port": self.node_port,
            "workload_kind": self.workload_kind,
            "pod": self.pod,
            "reach": self.reach,
            "reachable": self.reachable,
            "reach_error": self.reach_error,
            "kep1755": self.kep1755.as_json() if self.kep1755 else None,
        }


# --- reaching it ------------------------------------------------------------------------------

# Between rounds of tries. Short, so that a registry that answers at once
# costs nothing and one that answers a moment later (kube-proxy programming
# the node port just after the pod turned Ready) is used within ~0.05 s.
REACH_INTERVAL = 0.05
MIN_PROBE_TIMEOUT = 0.5  # a try made at or past the deadline still gets this long
# How long a registry that has just become Ready is asked at localhost:<nodePort>
# alone before a port-forward is tried too (kube-proxy routes a new
# Service's node port once its EndpointSlice lists the pod: ~1 s here).
LOCALHOST_HEAD_START = 3.0


@dataclass
class Way:
    """One way this machine may reach the registry: ``attempt(timeout)`` is
    None when ``GET /v2/`` answers that way, else why not, in words that name
    the way (``localhost:31234: connection refused``)."""

    name: str
    attempt: Callable[[float], str | None]
    last_error: str | None = None
    tries: int = 0


def first_answering(
    ways: Sequence[Way],
    *,
    deadline: float,
    interval: float = REACH_INTERVAL,
    rounds: int | None = None,
) -> Way | None:
    """Try each way in order, round after round every ``interval`` seconds,
    until one answers (returned) or ``deadline`` (``time.monotonic()``) has
    passed or ``rounds`` rounds were made (None; each way keeps its
    ``last_error``). Every way is tried at least once, even when the
    deadline has already passed."""
    done = 0
    while True:
        for way in ways:
            remaining = deadline - time.monotonic()
            timeout = min(PROBE_TIMEOUT, max(remaining, MIN_PROBE_TIMEOUT))
            way.tries += 1
            error = way.attempt(timeout)
            if error is None:
                way.last_error = None
                return way
            way.last_error = error
        done += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0 or done == rounds:
            return None
        time.sleep(min(interval, remaining))


def _probe(hostport: str) -> Way:
    def attempt(timeout: float) -> str | None:
        error = answers_v2(hostport, timeout=timeout)
        return None if error is None else f"{hostport}: {error}"

    return Way(hostport, attempt)


class _PortForward:
    """The way through a port-forward from ``127.0.0.1:<nodePort>`` to the
    registry pod. Each try opens one stream (a forward that cannot work says
    why at once), then starts the forwarder and asks ``/v2/`` through it; a
    forwarder that does not answer is closed again, so that the next try of
    ``localhost:<nodePort>`` does not reach this forward instead of the node."""

    def __init__(
        self, endpoint: RegistryEndpoint, kube: Kube, deployed: deploy.Deployed, log: Log
    ) -> None:
        self.endpoint = endpoint
        self.kube = kube
        self.deployed = deployed
        self.log = log
        self.opener: PodPortOpener | None = None
        self.forwarder: Forwarder | None = None
        self._probing = True  # the forwarder's own retries are not news then

    def way(self) -> Way:
        return Way(f"port-forward 127.0.0.1:{self.deployed.node_port}", self.attempt)

    def _find_pod(self) -> str | None:
        d = self.deployed
        pod = deploy.current_pod(self.kube, d.namespace, d.name, d.workload_kind)
        if pod is None or not pod.ready:
            return None
        self.endpoint.pod = pod.name
        return pod.name

    def _log(self, line: str) -> None:
        if not self._probing:
            self.log(line)

    def attempt(self, timeout: float) -> str | None:
        from watcher.cluster.portforward import Forwarder, OpenError, PodPortOpener

        d = self.deployed
        if self.opener is None:
            try:
                self.opener = PodPortOpener(
                    context=self.kube.context,
                    namespace=d.namespace,
                    find_pod=self._find_pod,
                    port=d.port,
                )
            except Exception as e:  # the official client's kubeconfig loader: its own types
                return f"port-forward: {e}"
        try:
            first = self.opener()
        except OpenError as e:
            return str(e)
        first.sock.close()
        first.release()
        # connect_timeout 0 while probing: one open per connection, the
        # rounds of first_answering do the retrying.
        forwarder = Forwarder(d.node_port, self.opener, log=self._log, connect_timeout=0)
        forwarder.start()
        error = answers_v2(f"127.0.0.1:{d.node_port}", timeout=timeout)
        if error is None:
            self.forwarder = forwarder
            self._probing = False
            forwarder.connect_timeout = 15.0
            return None
        why = forwarder.last_error or error
        forwarder.close()
        return f"through a port-forward 127.0.0.1:{d.node_port}: {why}"

    def close(self) -> None:
        if self.forwarder is not None:
            self.forwarder.close()
            self.forwarder = None
        if self.opener is not None:
            self.opener.close()
            self.opener = None


class RegistryUnreachable(FatalError):
    """The registry runs (or is published) but never answered ``GET /v2/``
    from this machine before the deadline."""


def _unreachable(
    endpoint: RegistryEndpoint, ways: Sequence[Way], waited: float, *, pod_port: int | None = None
) -> FatalError:
    if endpoint.source == "kep-1755":
        what = f"the registry {endpoint.host} that the cluster publishes (KEP-1755)"
        checks = [
            f"that this registry runs and listens on {endpoint.host} (on kind, k3d or "
            "minikube: the registry container their set-up started)",
        ]
        if endpoint.kep1755 and endpoint.kep1755.help:
            checks.append(f"the cluster's help for it: {endpoint.kep1755.help}")
    else:
        pod = f"pod {endpoint.namespace}/{endpoint.pod}" if endpoint.pod else "its pod"
        what = (
            f"the registry {endpoint.host} ({endpoint.workload_kind} "
            f"{endpoint.namespace}/{endpoint.name}, {pod} Ready)"
        )
        checks = [
            f"that node port {endpoint.node_port} is served on this machine (kube-proxy on a "
            "local node, a kind port mapping, minikube or Docker Desktop); a remote cluster "
            "uses the port-forward instead",
            "that the Service lists the Ready pod as an endpoint (kube-proxy refuses "
            "connections to a Service without one): `kubectl get endpointslices -n "
            f"{endpoint.namespace} -l kubernetes.io/service-name={endpoint.name}`",
            "that the API server can reach the node's kubelet for the port-forward (`kubectl "
            f"port-forward -n {endpoint.namespace} deploy/{endpoint.name} "
            f"{endpoint.node_port}:{pod_port or '<port>'}` fails the same way if not)",
            f"the registry's log: `kubectl logs -n {endpoint.namespace} "
            f"deploy/{endpoint.name} -c registry`",
        ]
        if endpoint.workload_kind == "StatefulSet":
            checks = [c.replace(" deploy/", " statefulset/") for c in checks]
    checks.append("a longer --timeout when the cluster is still starting")
    lines = [f"{what} does not answer GET /v2/ from this machine (tried for {waited:.0f} s):"]
    lines += [f"  {way.last_error} (tried {way.tries}x)" for way in ways]
    lines.append("check:")
    lines += [f"  - {c}" for c in checks]
    return RegistryUnreachable("\n".join(lines))


def _reach(
    endpoint: RegistryEndpoint,
    ways: Sequence[Way],
    *,
    deadline: float,
    wait: bool,
    log: Log,
    first_alone: float = 0.0,
) -> Way | None:
    """Try ``ways`` until one answers; only one round unless ``wait``. With
    ``first_alone``, ``ways[0]`` is tried alone for that many seconds before
    the others join in."""
    started = time.monotonic()
    alone = wait and first_alone > 0 and len(ways) > 1
    found = first_answering(ways[:1] if alone else ways, deadline=deadline, rounds=1)
    if found is None and wait and time.monotonic() < deadline:
        more = f"up to {deadline - time.monotonic():.0f} s more"
        if alone:
            log(
                f"waiting for {ways[0].name} to answer GET /v2/ (the registry has just become "
                f"Ready; a port-forward is tried too after {first_alone:g} s; {more})"
            )
            found = first_answering(ways[:1], deadline=min(deadline, started + first_alone))
        else:
            log(f"waiting for {' or '.join(w.name for w in ways)} to answer GET /v2/ ({more})")
        if found is None:
            found = first_answering(ways, deadline=deadline)
        if found is not None:
            log(f"{found.name} answers after {time.monotonic() - started:.1f} s")
    if found is None:
        endpoint.reach = "unreachable"
        endpoint.reach_error = "; ".join(w.last_error or f"{w.name}: not tried" for w in ways)
    return found


def ensure_registry(
    config: Config,
    *,
    context: str | None,
    namespace: str | None,
    timeout: float,
    log: Log = stderr_log,
    reach: bool = True,
    require_reach: bool = True,
) -> RegistryEndpoint:
    check_registry_settings(config.local_registry)
    check_namespace_flag(namespace)
    # API requests never wait longer than the whole command may.
    kube = Kube(context, timeout=min(DEFAULT_TIMEOUT, max(timeout, 1.0)))
    try:
        return _ensure(
            config,
            kube,
            namespace=namespace,
            timeout=timeout,
            log=log,
            reach=reach,
            require_reach=require_reach,
        )
    except BaseException:
        kube.close()
        raise


def _ensure(
    config: Config,
    kube: Kube,
    *,
    namespace: str | None,
    timeout: float,
    log: Log,
    reach: bool,
    require_reach: bool,
) -> RegistryEndpoint:
    started = time.monotonic()
    hosting = read_hosting(kube, log=log)
    if hosting is not None:
        kube.close()
        return _published(
            hosting, kube, started + timeout, log=log, reach=reach, require_reach=require_reach
        )
    ns = registry_namespace(config, namespace, kube)
    deployed = deploy.ensure_objects(kube, config.local_registry, ns, log=log)
    pod = deploy.wait_ready(kube, deployed, timeout=timeout, log=log)
    host = node_registry_host(deployed.node_port)
    endpoint = RegistryEndpoint(
        host=host,
        push_host=host,
        source="deployed",
        context=kube.context,
        server=kube.server,
        namespace=ns,
        name=deployed.name,
        node_port=deployed.node_port,
        workload_kind=deployed.workload_kind,
        pod=pod.name if pod else None,
        _kube=kube,
    )
    if reach:
        _reach_deployed(
            endpoint,
            kube,
            deployed,
            started=started,
            deadline=started + timeout,
            just_ready=pod is not None,
            log=log,
            require_reach=require_reach,
        )
    return endpoint


def _published(
    hosting: LocalRegistryHosting,
    kube: Kube,
    deadline: float,
    *,
    log: Log,
    reach: bool,
    require_reach: bool,
) -> RegistryEndpoint:
    """The cluster's own registry (KEP-1755): nothing is deployed; it must answer."""
    started = time.monotonic()
    endpoint = RegistryEndpoint(
        host=hosting.host,
        push_host=hosting.host,
        source="kep-1755",
        context=kube.context,
        server=kube.server,
        kep1755=hosting,
        _kube=kube,  # its connection closed meanwhile; the pull probe opens it again
    )
    log(f"the cluster publishes a local registry (KEP-1755): {hosting.host}; not deploying one")
    if reach:
        ways = [_probe(hosting.host)]
        found = _reach(endpoint, ways, deadline=deadline, wait=require_reach, log=log)
        if found is not None:
            endpoint.reach = "kep-1755"
        elif require_reach:
            raise _unreachable(endpoint, ways, time.monotonic() - started)
    return endpoint


def _reach_deployed(
    endpoint: RegistryEndpoint,
    kube: Kube,
    deployed: deploy.Deployed,
    *,
    started: float,
    deadline: float,
    just_ready: bool,
    log: Log,
    require_reach: bool,
) -> None:
    """Find the way this machine pushes to the registry devreg deployed.

    The pod being Ready does not mean this machine can push yet: right after creation
    kube-proxy may not have programmed the node port, and the kubelet may refuse the
    forward for a moment. Both ways are tried again until the deadline (the same
    --timeout as the readiness wait). A registry that has ``just_ready`` turned Ready
    gives localhost a head start: a forward tried at once would win that race on a
    local cluster (until kube-proxy's rule exists, 127.0.0.1:<nodePort> is free for
    it) and then be shadowed by that rule."""
    forward = _PortForward(endpoint, kube, deployed, log)
    ways = [_probe(endpoint.host), forward.way()]
    try:
        found = _reach(
            endpoint,
            ways,
            deadline=deadline,
            wait=require_reach,
            log=log,
            first_alone=LOCALHOST_HEAD_START if just_ready else 0.0,
        )
    except BaseException:
        forward.close()
        endpoint.close()
        raise
    if found is None or found is ways[0]:
        forward.close()
    if found is ways[0]:
        endpoint.reach = "localhost"
    elif found is not None:
        endpoint.reach, endpoint.push_host = "port-forward", f"127.0.0.1:{deployed.node_port}"
        endpoint._forwarder, endpoint._opener = forward.forwarder, forward.opener
        log(
            f"localhost:{deployed.node_port} does not answer here; forwarding "
            f"127.0.0.1:{deployed.node_port} to the registry pod"
        )
    elif require_reach:
        error = _unreachable(endpoint, ways, time.monotonic() - started, pod_port=deployed.port)
        endpoint.close()
        raise error


# --- plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryPlan:
    paths: dict[str, PathWord]
    kep1755: LocalRegistryHosting | None = None
    push_checks: Mapping[str, PushCheck] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "paths": dict(self.paths),
            "kep1755": self.kep1755.as_json() if self.kep1755 else None,
            "push_checks": {k: v.as_json() for k, v in self.push_checks.items()},
        }


_DEFAULT_CHECKER: PushChecker | None = None


def default_checker() -> PushChecker:
    """One checker per process: answers are cached per repository per run."""
    global _DEFAULT_CHECKER
    if _DEFAULT_CHECKER is None:
        from watcher.cluster.pushcheck import PushChecker

        _DEFAULT_CHECKER = PushChecker()
    return _DEFAULT_CHECKER


def plan_delivery(
    config: Config,
    cluster: Cluster,
    *,
    context: str | None,
    namespace: str | None = None,
    checker: PushChecker | None = None,
    log: Log = stderr_log,
    ask_cluster: bool = True,
) -> DeliveryPlan:
    """Path word per image (SPEC §2), with the push check and KEP-1755 applied.
    ``namespace`` is accepted for symmetry with ``ensure_registry``."""
    del namespace
    first = plan_mod.first_paths(config, cluster)
    checks: dict[str, PushCheck] = {}
    for key, word in first.items():
        if word == "local-registry-if-refused":
            result = (checker or default_checker()).check(config.images[key].image)
            checks[key] = result
            if not result.allowed:
                log(
                    f"[{key}] {result.repository}: no push permission ({result.reason}); "
                    "using the local registry"
                )
    paths = plan_mod.decided_paths(first, {k: c.allowed for k, c in checks.items()})
    hosting = None
    if ask_cluster and any(w == "local-registry" for w in paths.values()):
        with Kube(context) as kube:
            hosting = read_hosting(kube, log=log)
    return DeliveryPlan(paths=paths, kep1755=hosting, push_checks=checks)


# --- status -------------------------------------------------------------------------------------


def status_info(
    *,
    config: Config | Path,
    context: str | None,
    namespace: str | None,
    kube: Kube | None = None,
) -> dict[str, Any]:
    """What is deployed and whether it answers; changes nothing. Path words
    are the offline ones (no push check: status must stay quick). ``kube``: the
    caller's API client for ``context`` (kept open), else one of its own."""
    cfg = config if isinstance(config, Config) else load_valid_config(config)
    cluster = classify_cluster(context)
    paths = {k: delivery_path(i, cfg.local_registry, cluster) for k, i in cfg.images.items()}
    with contextlib.nullcontext(kube) if kube is not None else Kube(context) as kube:
        hosting = read_hosting(kube, log=lambda _: None)
        ns = registry_namespace(cfg, namespace, kube)
        observed = deploy.observe(kube, ns, cfg.local_registry.name)
        info: dict[str, Any] = {
            "context": kube.context,
            "server": kube.server,
            "cluster": cluster.kind,
            "namespace": ns,
            "name": cfg.local_registry.name,
            "deployed": observed.workload_kind is not None,
            "workload_kind": observed.workload_kind,
            "service_type": observed.service_type,
            "node_port": observed.node_port,
            "host": node_registry_host(observed.node_port) if observed.node_port else None,
            "pod": observed.pod.name if observed.pod else None,
            "pod_phase": observed.pod.phase if observed.pod else None,
            "pod_ready": bool(observed.pod and observed.pod.ready),
            "pod_detail": observed.pod.detail if observed.pod else None,
            "pod_node": observed.pod.node if observed.pod else None,
            # One line per reason the pod is not Ready, in the kubelet's words
            # (pod, container, reason, message); [] when it is Ready.
            "pod_problems": observed.pod.lines() if observed.pod else [],
            "rollout_done": observed.rollout_done,
            "kep1755": hosting.as_json() if hosting else None,
            "paths": paths,
        }
    if hosting is not None:
        info["host"] = hosting.host
    error = answers_v2(info["host"]) if info["host"] else "no registry"
    info["answers"] = error is None
    info["answer_error"] = error
    return info


def format_status(info: Mapping[str, Any]) -> list[str]:
    """Text lines for ``devreg status``'s registry half."""
    if info.get("kep1755"):
        return [
            f"registry: {info['host']} (published by the cluster, KEP-1755), "
            f"{'answers' if info['answers'] else 'does not answer: ' + str(info['answer_error'])}"
        ]
    where = f"{info['namespace']}/{info['name']} (context {info['context']})"
    if not info.get("deployed"):
        return [f"registry: not deployed in {where}; `devreg up` deploys it"]
    pod = info.get("pod")
    if pod:
        pod_words = f"pod {pod} {'Ready' if info['pod_ready'] else info['pod_phase']}"
        if not info["pod_ready"]:
            pod_words += ", not Ready" + (
                f", on node {info['pod_node']}" if info.get("pod_node") else ""
            )
    else:
        pod_words = "no pod"
    answers = "answers" if info["answers"] else f"does not answer here ({info['answer_error']})"
    lines = [
        f"registry: {info['host'] or '-'} {answers}",
        f"  {info['workload_kind']} {where}, node port {info['node_port'] or '-'}, {pod_words}",
    ]
    lines += [f"  {line}" for line in info.get("pod_problems") or []]
    words = info.get("paths") or {}
    if words:
        lines.append("  paths: " + ", ".join(f"{k}={w}" for k, w in sorted(words.items())))
    return lines
