"""The pull probe: prove that every node can pull from the registry, or say why not.

``devreg up`` and ``devreg status`` run it once the registry answers here:

1. the probe image (:mod:`hookpkg.pullprobe`, made from bytes) goes into the
   registry through its HTTP API (so it works with ``localbuild: false`` and no Docker
   engine);
2. one pod per schedulable node, pinned to it with ``nodeName``, pulls
   ``<host>/devreg/pull-probe:<tag>`` with ``imagePullPolicy: Always``, all nodes at once;
3. each pod's container status says *pulled* or gives the kubelet's message, which
   :func:`hookpkg.pullprobe.diagnose` turns into a cause and a fix. A refused pull is
   asked again with a new pod, once a second for up to ``SETTLE`` seconds, before it
   counts: each node's kube-proxy programs a new node port on its own, a moment after
   the registry's pod is Ready (a node whose kube-proxy was ~1 s late was seen to refuse
   the first pull and pull the second). A message naming
   ``[::1]`` is checked once more on that node through ``127.0.0.1``, so the offered
   setting is one that was seen to work;
4. the pods are deleted; a clean result is cached in ``.devreg/pullprobe.json`` under a
   key of the API server, the registry (namespace, name, kind, the host nodes pull) and
   the node set (names and uids): the probe runs again only when one of those changes.
   A failing result is never cached (the user is about to fix it).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookpkg import pullprobe as pure
from hookpkg.errors import FatalError, printable
from watcher.cluster import registryhttp
from watcher.cluster.httpconn import HTTPError, network_words
from watcher.cluster.kube import Kube
from watcher.safefile import read_private, write_private

if TYPE_CHECKING:
    from watcher.cluster.registry import RegistryEndpoint

CACHE_FILE = "pullprobe.json"
PROBE_TIMEOUT = 30.0  # per run: a 1 KB image pulls in well under a second
POLL_INTERVAL = 0.1
# How long a node's refused pull is retried before it counts (see the module's doc).
SETTLE = 6.0
SETTLE_INTERVAL = 1.0
Log = Callable[[str], None]


@dataclass
class NodeResult:
    node: str
    state: str  # pulled | failed | skipped | timeout
    seconds: float | None = None
    message: str | None = None  # the kubelet's, verbatim
    cause: str | None = None
    says: str | None = None
    fix: str | None = None
    snippets: list[str] = field(default_factory=list)


@dataclass
class ProbeResult:
    host: str
    nodes: list[NodeResult] = field(default_factory=list)
    cached: bool = False
    seconds: float = 0.0
    error: str | None = None  # the probe could not run at all

    @property
    def ok(self) -> bool:
        return self.error is None and all(n.state in ("pulled", "skipped") for n in self.nodes)

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ok": self.ok,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "nodes": [asdict(n) for n in self.nodes],
        }


def format_probe(result: Mapping[str, Any]) -> list[str]:
    """Text lines for ``up`` and ``status``."""
    if result.get("state") == "running":
        return [f"pull probe: running (the watcher's), {result.get('host')}/…"]
    if result.get("error"):
        return [f"pull probe: could not run: {result['error']}"]
    nodes = result.get("nodes") or []
    pulled = [n for n in nodes if n["state"] == "pulled"]
    how = "cached" if result.get("cached") else f"{result.get('seconds', 0):.2f} s"
    if result.get("from_watcher"):
        how += ", the watcher's"
    lines = [f"pull probe: {len(pulled)} of {len(nodes)} node(s) pull {result['host']}/… ({how})"]
    for n in nodes:
        if n["state"] == "pulled":
            lines.append(f"  {n['node']}: pulls")
        elif n["state"] == "skipped":
            lines.append(f"  {n['node']}: skipped ({n['says']})")
        else:
            lines.append(f"  {n['node']}: cannot pull ({n['cause']}): {n['says']}")
            if n.get("message"):
                # The kubelet's words carry the runtime's and the registry's: escaped.
                lines.append(f"    kubelet: {printable(str(n['message']))}")
            lines.append(f"    fix: {n['fix']}")
            for snippet in n.get("snippets") or []:
                lines += [f"      {line}" for line in snippet.splitlines()]
    return lines


# --- nodes ---------------------------------------------------------------------------------


def _ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def why_not_probed(node: Mapping[str, Any]) -> str | None:
    """None for a node workloads can land on; else why it is left out."""
    if (node.get("spec") or {}).get("unschedulable"):
        return "cordoned"
    if not _ready(node):
        return "not Ready"
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute"):
            value = f"={taint['value']}" if taint.get("value") else ""
            return f"taint {taint.get('key')}{value}:{taint['effect']}"
    return None


def cache_key(kube: Kube, registry: Mapping[str, Any], nodes: list[dict[str, Any]]) -> str:
    node_set = sorted(
        (n["metadata"]["name"], n["metadata"].get("uid", ""), why_not_probed(n) or "")
        for n in nodes
    )
    blob = json.dumps({"server": kube.server, "registry": registry, "nodes": node_set})
    return hashlib.sha256(blob.encode()).hexdigest()


# --- the image into the registry -------------------------------------------------------------


def push_probe_image(push_host: str, image: pure.ProbeImage, *, timeout: float = 10.0) -> None:
    """The probe image into the registry at ``push_host`` (plain HTTP, as devreg's
    registry speaks), through the one registry client; blobs it already has are not
    sent again. Raises :class:`PushError` naming the registry."""
    repo = pure.REPOSITORY
    try:
        for digest, data in image.blobs.items():
            registryhttp.push_blob(push_host, repo, digest, data, timeout=timeout)
        for digest, manifest in image.manifests.items():
            registryhttp.put_manifest(
                push_host, repo, digest, manifest, media_type=pure.MANIFEST, timeout=timeout
            )
        registryhttp.put_manifest(
            push_host, repo, image.tag, image.index, media_type=pure.MANIFEST_LIST, timeout=timeout
        )
    except (OSError, HTTPError) as e:
        raise PushError(f"{push_host}: {network_words(e, timeout)}") from e


class PushError(FatalError):
    pass


# --- the pods ------------------------------------------------------------------------------


def _create(kube: Kube, pod: dict[str, Any]) -> str:
    from watcher.cluster.kube import Action, resource_path

    namespace = pod["metadata"]["namespace"]
    action = Action("create", "Pod", namespace, pod["metadata"]["generateName"] + "*")
    status, body = kube.request("POST", resource_path("Pod", namespace), action, body=pod)
    if status != 201:
        raise kube.error(action, status, body)
    return str(body["metadata"]["name"])


def _watch_pulls(
    kube: Kube, namespace: str, run: str, pods: dict[str, str], timeout: float
) -> dict[str, tuple[str, str, float]]:
    """node -> (outcome, detail, seconds) for each pod, until all are decided or
    ``timeout``; undecided nodes are left out."""
    started = time.monotonic()
    decided: dict[str, tuple[str, str, float]] = {}
    node_of = {name: node for node, name in pods.items()}
    while len(decided) < len(pods) and time.monotonic() - started < timeout:
        # The kubelet's "Pulled" event comes as soon as the pull is done; the pod's
        # status says so only once the container has started (seconds later on a
        # busy node). Failures are read from the status, in the kubelet's words.
        for event in kube.list("Event", namespace, field_selector="reason=Pulled"):
            node = node_of.get((event.get("involvedObject") or {}).get("name", ""))
            if node is not None and node not in decided:
                decided[node] = ("pulled", str(event.get("message") or ""), _since(started))
        for pod in kube.list("Pod", namespace, label_selector=f"{pure.RUN_LABEL}={run}"):
            node = node_of.get(pod["metadata"]["name"])
            if node is not None and node not in decided:
                outcome = pure.pull_outcome(pod)
                if outcome is not None:
                    decided[node] = (*outcome, _since(started))
        if len(decided) < len(pods):
            time.sleep(POLL_INTERVAL)
    return decided


def _since(started: float) -> float:
    return time.monotonic() - started


def _pending_detail(kube: Kube, namespace: str, name: str) -> str:
    pod = kube.get("Pod", namespace, name) or {}
    status = pod.get("status") or {}
    for c in status.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting:
            return f"{waiting.get('reason')}: {waiting.get('message') or ''}".strip(": ")
    return f"pod {name} still {status.get('phase', 'Pending')}"


def _probe_nodes(
    kube: Kube, namespace: str, registry: str, host: str, nodes: list[str], timeout: float
) -> dict[str, NodeResult]:
    """One pod per node pulling from ``host``; the pods are deleted afterwards."""
    run = uuid.uuid4().hex[:12]
    image = f"{host}/{pure.REPOSITORY}:{pure.probe_image().tag}"
    pods: dict[str, str] = {}
    try:
        for node in nodes:
            spec = pure.probe_pod(
                namespace=namespace, registry=registry, node=node, image=image, run=run
            )
            pods[node] = _create(kube, spec)
        decided = _watch_pulls(kube, namespace, run, pods, timeout)
        results = {}
        for node in nodes:
            if node in decided:
                outcome, detail, seconds = decided[node]
                if outcome == "pulled":
                    results[node] = NodeResult(node, "pulled", round(seconds, 3))
                else:
                    results[node] = NodeResult(node, "failed", round(seconds, 3), message=detail)
            else:
                detail = _pending_detail(kube, namespace, pods[node])
                results[node] = NodeResult(node, "timeout", timeout, message=detail)
        return results
    finally:
        for name in pods.values():
            kube.delete("Pod", namespace, name)


def _probe_settled(
    kube: Kube, namespace: str, registry: str, host: str, nodes: list[str], timeout: float
) -> dict[str, NodeResult]:
    """:func:`_probe_nodes`, with refused pulls asked again for up to ``SETTLE``
    seconds (a node's kube-proxy may not have programmed the node port yet)."""
    started = time.monotonic()
    found = _probe_nodes(kube, namespace, registry, host, nodes, timeout)
    while True:
        refused = [n for n, r in found.items() if pure.refused(r.message or "")]
        if not refused or time.monotonic() - started >= SETTLE:
            return found
        time.sleep(SETTLE_INTERVAL)
        found.update(_probe_nodes(kube, namespace, registry, host, refused, timeout))


def _diagnose(
    kube: Kube,
    namespace: str,
    registry: str,
    host: str,
    failed: list[NodeResult],
    timeout: float,
) -> None:
    """Cause and fix for each failed node. A refusal at ``[::1]`` is probed once more
    through ``127.0.0.1`` on those nodes (together), so the fix offered was seen to work."""
    v6 = [r.node for r in failed if "[::1]:" in (r.message or "")]
    v4_works: dict[str, bool] = {}
    if v6 and not host.startswith("127."):
        port = host.rpartition(":")[2]
        again = _probe_settled(kube, namespace, registry, f"127.0.0.1:{port}", v6, timeout)
        v4_works = {node: r.state == "pulled" for node, r in again.items()}
    for r in failed:
        if r.state == "timeout":
            r.cause = "timeout"
            r.says = f"no pull result within {timeout:g} s ({r.message})"
            r.fix = "look at the node's kubelet and container runtime"
            continue
        d = pure.diagnose(r.message or "", host, v4_works=v4_works.get(r.node))
        r.cause, r.says, r.fix, r.snippets = d.cause, d.says, d.fix, list(d.snippets)


# --- the probe ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The registry to probe: the host nodes pull, where this machine pushes, and what
    names it in the cache key (devreg's deployed one, or the cluster's KEP-1755)."""

    host: str
    push_host: str
    source: str  # deployed | kep-1755
    namespace: str | None = None
    name: str | None = None
    kind: str | None = None

    @classmethod
    def of_endpoint(cls, endpoint: RegistryEndpoint) -> Target:
        return cls(
            endpoint.host,
            endpoint.push_host,
            endpoint.source,
            endpoint.namespace,
            endpoint.name,
            endpoint.workload_kind,
        )


def probe_pulls(
    kube: Kube,
    target: Target,
    *,
    state_dir: Path | None,
    timeout: float = PROBE_TIMEOUT,
    log: Log = lambda _: None,
) -> ProbeResult:
    """Probe every schedulable node (cached; see the module's doc). The probe's pods
    go to the registry's namespace (the context's for a KEP-1755 registry)."""
    host = target.host
    namespace = target.namespace or kube.namespace
    registry = target.name or "devreg"
    started = time.monotonic()
    result = ProbeResult(host)
    nodes = kube.list("Node", None)
    # Where this machine pushes (a port-forward's port) is not the registry's identity.
    key = cache_key(kube, {**asdict(target), "push_host": None}, nodes)
    cached = _read_cache(state_dir, key)
    if cached is not None:
        cached.cached = True
        return cached
    probed: list[str] = []
    for node in sorted(nodes, key=lambda n: str(n["metadata"]["name"])):
        name = str(node["metadata"]["name"])
        why = why_not_probed(node)
        if why is None:
            probed.append(name)
        else:
            result.nodes.append(NodeResult(name, "skipped", says=why))
    if not probed:
        result.error = "no node workloads can land on (all cordoned, tainted or not Ready)"
        return result
    log(f"pull probe: {len(probed)} node(s) pull {host}/{pure.REPOSITORY}")
    try:
        push_probe_image(target.push_host, pure.probe_image())
    except PushError as e:
        result.error = f"pushing the probe image failed: {e}"
        return result
    try:
        found = _probe_settled(kube, namespace, registry, host, probed, timeout)
        failed = [r for r in found.values() if r.state != "pulled"]
        _diagnose(kube, namespace, registry, host, failed, timeout)
    except FatalError as e:  # no right to create pods here, admission refusing them
        result.error = f"the probe's pods: {e}"
        return result
    result.nodes = sorted([*result.nodes, *found.values()], key=lambda n: n.node)
    result.seconds = time.monotonic() - started
    if result.ok:
        _write_cache(state_dir, key, result)
    return result


def _read_cache(state_dir: Path | None, key: str) -> ProbeResult | None:
    if state_dir is None:
        return None
    try:
        text = read_private(state_dir / CACHE_FILE)
        data = json.loads(text) if text else None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        raw = data["result"]
        nodes = [NodeResult(**n) for n in raw["nodes"]]
        cached = ProbeResult(str(raw["host"]), nodes, seconds=float(raw["seconds"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # Only clean results are written; anything else in the file was not ours.
    clean = all(
        isinstance(n.node, str)
        and n.state in ("pulled", "skipped")
        and (n.says is None or (isinstance(n.says, str) and n.says.isprintable()))
        for n in cached.nodes
    )
    return cached if clean and cached.host.isprintable() else None


def _write_cache(state_dir: Path | None, key: str, result: ProbeResult) -> None:
    if state_dir is None:
        return
    try:
        state_dir.mkdir(exist_ok=True)
        text = json.dumps({"key": key, "result": result.as_json()}, indent=2) + "\n"
        write_private(state_dir / CACHE_FILE, text)
    except OSError:
        pass  # a cache that cannot be written only costs the next run a probe


def probe_endpoint(
    endpoint: RegistryEndpoint, state_dir: Path | None, *, log: Log = lambda _: None
) -> ProbeResult | None:
    """The probe for a registry ``devreg up`` just made sure of; None when there is
    no way to push the probe image from here."""
    if not endpoint.reachable:
        return None
    kube = endpoint.api or Kube(endpoint.context)
    try:
        return probe_pulls(kube, Target.of_endpoint(endpoint), state_dir=state_dir, log=log)
    finally:
        if endpoint.api is None:
            kube.close()


class BackgroundProbe:
    """The probe in a thread of its own, for the watcher: it never holds up a build
    (most builds need no node to pull: a build that pushes is done when the registry
    has the image), its result goes to the watcher's log and status, and a node that
    cannot pull stops nothing. It has an API client of its own (the session's serves
    the builds)."""

    def __init__(
        self,
        endpoint: RegistryEndpoint,
        state_dir: Path | None,
        *,
        log: Log,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._state_dir = state_dir
        self._log = log
        self.on_done = on_done
        self.result: ProbeResult | None = None
        self._thread = threading.Thread(target=self._run, name="pull-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        endpoint = self._endpoint
        try:
            with Kube(endpoint.context) as kube:
                target = Target.of_endpoint(endpoint)
                result = probe_pulls(kube, target, state_dir=self._state_dir, log=self._log)
        except Exception as e:  # an API server gone away, refused rights: shown, not fatal
            result = ProbeResult(endpoint.host, error=str(e) or type(e).__name__)
        self.result = result
        for line in format_probe(result.as_json()):
            self._log(line)
        if self.on_done is not None:
            self.on_done()

    def as_json(self) -> dict[str, Any]:
        if self.result is None:
            return {"host": self._endpoint.host, "state": "running", "nodes": []}
        return {**self.result.as_json(), "state": "done"}
