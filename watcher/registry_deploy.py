"""Put the registry's objects into the cluster, wait for its pod, take them away.

``ensure_objects`` applies what :mod:`watcher.registry_objects` builds
(server-side apply, field manager ``devreg``): namespace when missing, the
workload, the Service; then deletes the workload of the other kind (the
persistence setting switched). ``wait_ready`` waits for the rollout to finish
and the pod to be Ready, and says why not when it times out. ``remove`` is
``devreg down``.

Requests are kept to what is needed, because this runs at every watcher
start: on an unchanged, ready registry ``ensure_objects`` + ``wait_ready`` are
five requests (namespace, Service, two applies, one delete that finds
nothing), and the readiness comes from the apply's answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hookpkg.config import LocalRegistry
from hookpkg.errors import FatalError
from watcher import registry_objects as objects
from watcher.kube import FIELD_MANAGER, ApiError, Kube
from watcher.registry_objects import WorkloadKind

Log = Callable[[str], None]
POLL_INTERVAL = 0.25


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Deployed:
    namespace: str
    name: str
    workload_kind: WorkloadKind
    node_port: int
    port: int
    workload: Mapping[str, Any]  # as the API server answered the apply


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str
    ready: bool
    detail: str  # why it is not ready, in words ("" when ready)


def _managers(obj: Mapping[str, Any]) -> list[str]:
    fields = (obj.get("metadata") or {}).get("managedFields") or []
    return sorted({str(f.get("manager")) for f in fields if f.get("manager")})


def service_node_port(service: Mapping[str, Any]) -> int | None:
    ports = (service.get("spec") or {}).get("ports") or []
    named = [p for p in ports if p.get("name") == "registry"] or ports
    for p in named:
        if isinstance(p.get("nodePort"), int):
            return int(p["nodePort"])
    return None


def _ensure_namespace(kube: Kube, namespace: str, log: Log) -> None:
    try:
        ns = kube.get("Namespace", None, namespace)
    except ApiError as e:
        if e.status == 403:
            return  # may not read namespaces: the applies below will tell
        raise
    if ns is None:
        kube.apply(objects.namespace_object(namespace))
        log(f"created namespace {namespace}")
        return
    if (ns.get("status") or {}).get("phase") == "Terminating" or (ns.get("metadata") or {}).get(
        "deletionTimestamp"
    ):
        raise FatalError(
            f"namespace {namespace!r} is being deleted (context {kube.context!r}): wait until "
            f"`kubectl get namespace {namespace}` no longer finds it and run devreg again "
            "(it will be created anew), or use another namespace (--namespace or "
            "localRegistry.namespace)"
        )


def _conflict(kube: Kube, obj: Mapping[str, Any], error: ApiError) -> FatalError:
    kind, name = obj["kind"], obj["metadata"]["name"]
    ns = obj["metadata"]["namespace"]
    fields = [str(c.get("field", "")) for c in error.causes if c.get("field")]
    owners = sorted(set(re.findall(r'conflict with "([^"]+)"', error.server_message)))
    return FatalError(
        f"{kind} {ns}/{name} (context {kube.context!r}) has fields set by "
        f"{', '.join(owners) or 'another manager'} that devreg would change"
        + (f" ({', '.join(fields)})" if fields else "")
        + ": devreg does not overwrite what others set. If this is devreg's registry, "
        "run `devreg down` and `devreg up`; otherwise give devreg's registry another name "
        "(localRegistry.name)"
    )


def _apply(kube: Kube, obj: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return kube.apply(obj)
    except ApiError as e:
        if e.status == 409:
            raise _conflict(kube, obj, e) from None
        if (
            e.status == 422
            and obj["kind"] == "StatefulSet"
            and "updates to statefulset spec" in e.server_message
        ):
            ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            raise FatalError(
                f"StatefulSet {ns}/{name}: localRegistry.persistence.size or storageClassName "
                "changed, and a StatefulSet's volume claim template cannot change. Keep the "
                "old values, or run `devreg down --purge` (deletes the registry's images) and "
                "`devreg up`"
            ) from None
        raise


def _check_service(kube: Kube, existing: Mapping[str, Any] | None, namespace: str) -> None:
    if existing is None:
        return
    kind = (existing.get("spec") or {}).get("type", "ClusterIP")
    managers = _managers(existing)
    if kind != "NodePort" and FIELD_MANAGER not in managers:
        name = existing["metadata"]["name"]
        raise FatalError(
            f"Service {namespace}/{name} already exists as type {kind} and was not made by "
            f"devreg (managed by {', '.join(managers) or 'unknown'}; context "
            f"{kube.context!r}). devreg needs a NodePort Service of that name and will not "
            f"change another one: delete it (`kubectl -n {namespace} delete service {name}`) "
            "or give the registry another name (localRegistry.name)"
        )


def ensure_objects(
    kube: Kube, registry: LocalRegistry, namespace: str, *, log: Log = _quiet
) -> Deployed:
    """Apply the namespace, workload and Service; delete the other workload kind."""
    objects.check_registry_settings(registry)
    _ensure_namespace(kube, namespace, log)
    existing = kube.get("Service", namespace, registry.name)
    _check_service(kube, existing, namespace)
    workload = _apply(kube, objects.workload_object(registry, namespace))
    service = _apply(
        kube,
        objects.service_object(
            registry, namespace, node_port=service_node_port(existing) if existing else None
        ),
    )
    if existing is None and service_node_port(service) is not None:
        # Own the node port the cluster just assigned, so that a later port
        # change keeps it, and the next apply (which names it) is a no-op.
        service = _apply(
            kube, objects.service_object(registry, namespace, node_port=service_node_port(service))
        )
    other = objects.other_workload_kind(registry)
    if kube.delete(other, namespace, registry.name):
        log(
            f"persistence is now {'on' if registry.persistence.enabled else 'off'}: deleted "
            f"the {other} {namespace}/{registry.name} (volume claims are kept)"
        )
    node_port = service_node_port(service)
    if node_port is None:
        raise FatalError(
            f"Service {namespace}/{registry.name} has no node port after apply "
            f"(context {kube.context!r}); the cluster may not allow NodePort Services"
        )
    return Deployed(
        namespace=namespace,
        name=registry.name,
        workload_kind=objects.workload_kind(registry),
        node_port=node_port,
        port=registry.port,
        workload=workload,
    )


# --- readiness --------------------------------------------------------------------------------


def rollout_done(workload: Mapping[str, Any]) -> bool:
    """The newest spec runs, in one pod, and that pod is Ready."""
    meta = workload.get("metadata") or {}
    status = workload.get("status") or {}
    if status.get("observedGeneration", -1) < meta.get("generation", 0):
        return False
    if status.get("readyReplicas", 0) < 1:
        return False
    if workload.get("kind") == "StatefulSet":
        return bool(status.get("updateRevision")) and status.get("currentRevision") == status.get(
            "updateRevision"
        )
    # Recreate: no old pod may still count.
    return bool(status.get("updatedReplicas", 0) >= 1 and status.get("replicas", 0) == 1)


def _pod_detail(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    words: list[str] = []
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") != "True":
            words.append(
                f"not scheduled: {c.get('reason') or 'Unschedulable'}: {c.get('message') or ''}"
            )
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        if "waiting" in state:
            w = state["waiting"] or {}
            msg = f" ({w['message']})" if w.get("message") else ""
            words.append(f"container {cs.get('name')} waiting: {w.get('reason') or '?'}{msg}")
        elif "terminated" in state:
            t = state["terminated"] or {}
            words.append(
                f"container {cs.get('name')} terminated: {t.get('reason') or ''} "
                f"(exit {t.get('exitCode')})"
            )
        elif not cs.get("ready"):
            words.append(f"container {cs.get('name')} running, not ready (readiness probe)")
    return "; ".join(words)


def pod_state(pod: Mapping[str, Any]) -> PodState:
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return PodState(
        name=str(pod["metadata"]["name"]),
        phase=str(status.get("phase") or "Unknown"),
        ready=ready,
        detail="" if ready else _pod_detail(pod),
    )


def registry_pods(
    kube: Kube, namespace: str, name: str, kind: WorkloadKind
) -> list[dict[str, Any]]:
    """Pods of this workload kind, not being deleted, newest first."""
    pods = kube.list("Pod", namespace, label_selector=f"app={name}")
    owner_kind = "StatefulSet" if kind == "StatefulSet" else "ReplicaSet"
    mine = [
        p
        for p in pods
        if not (p.get("metadata") or {}).get("deletionTimestamp")
        and any(
            o.get("kind") == owner_kind
            for o in (p.get("metadata") or {}).get("ownerReferences") or []
        )
    ]
    mine.sort(key=lambda p: str(p["metadata"].get("creationTimestamp") or ""), reverse=True)
    return mine


def current_pod(kube: Kube, namespace: str, name: str, kind: WorkloadKind) -> PodState | None:
    """The pod serving now: the newest Ready one, else the newest."""
    states = [pod_state(p) for p in registry_pods(kube, namespace, name, kind)]
    return next((s for s in states if s.ready), states[0] if states else None)


def _why_no_pod(workload: Mapping[str, Any] | None) -> str:
    if workload is None:
        return "the workload itself is gone"
    for c in (workload.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") == "ReplicaFailure":
            return f"{c.get('reason')}: {c.get('message')}"
        if c.get("type") == "Progressing" and c.get("status") == "False":
            return f"{c.get('reason')}: {c.get('message')}"
    return "no pod was created"


def wait_ready(
    kube: Kube,
    deployed: Deployed,
    *,
    timeout: float,
    log: Log = _quiet,
    clock: Callable[[], float] = time.monotonic,
) -> PodState | None:
    """Wait until the rollout is done and the pod Ready. Returns the pod when
    it had to be looked at (None on the fast path: the apply's answer showed a
    finished rollout). Raises FatalError naming the pod, its phase and the
    container's waiting reason on timeout."""
    if rollout_done(deployed.workload):
        return None
    ns, name, kind = deployed.namespace, deployed.name, deployed.workload_kind
    deadline = clock() + timeout
    log(f"waiting up to {timeout:g} s for the registry pod ({kind} {ns}/{name}) to be Ready")
    while True:
        workload = kube.get(kind, ns, name)
        if workload is not None and rollout_done(workload):
            return current_pod(kube, ns, name, kind)
        if clock() >= deadline:
            break
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - clock())))
    pod = current_pod(kube, ns, name, kind)
    hint = f"`kubectl --context {kube.context} -n {ns} describe {kind.lower()} {name}`"
    if pod is None:
        raise FatalError(
            f"the registry ({kind} {ns}/{name}) has no pod after {timeout:g} s: "
            f"{_why_no_pod(workload)}. Look at {hint}, or raise --timeout"
        )
    if pod.ready:
        # Ready, but the rollout did not finish (an old pod lingers): say so.
        detail = "Ready, but the rollout has not finished"
    else:
        detail = f"phase {pod.phase}" + (f"; {pod.detail}" if pod.detail else "")
    raise FatalError(
        f"the registry pod {ns}/{pod.name} is not Ready after {timeout:g} s: {detail}. "
        f"Look at `kubectl --context {kube.context} -n {ns} describe pod {pod.name}`, "
        "or raise --timeout"
    )


# --- down -------------------------------------------------------------------------------------


def remove(kube: Kube, namespace: str, name: str, *, purge: bool) -> list[str]:
    """Delete the registry's objects; with ``purge`` its volume claims too.
    Returns what was deleted (``Deployment/registry``)."""
    removed: list[str] = []
    for kind in ("Deployment", "StatefulSet", "Service"):
        if kube.delete(kind, namespace, name):
            removed.append(f"{kind}/{name}")
    if purge:
        claim = re.compile(rf"{re.escape(name)}-{re.escape(name)}-\d+\Z")
        for pvc in kube.list("PersistentVolumeClaim", namespace):
            pvc_name = str(pvc["metadata"]["name"])
            if claim.match(pvc_name) and kube.delete("PersistentVolumeClaim", namespace, pvc_name):
                removed.append(f"PersistentVolumeClaim/{pvc_name}")
    return removed


# --- status -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """What exists now (``devreg status``), without changing anything."""

    namespace: str
    name: str
    workload_kind: WorkloadKind | None
    node_port: int | None
    service_type: str | None
    pod: PodState | None
    rollout_done: bool


def observe(kube: Kube, namespace: str, name: str) -> Observed:
    workload: dict[str, Any] | None = None
    kind: WorkloadKind | None = None
    candidates: tuple[WorkloadKind, ...] = ("Deployment", "StatefulSet")
    for candidate in candidates:
        found = kube.get(candidate, namespace, name)
        if found is not None:
            workload, kind = found, candidate
            break
    service = kube.get("Service", namespace, name)
    pod = current_pod(kube, namespace, name, kind) if kind is not None else None
    return Observed(
        namespace=namespace,
        name=name,
        workload_kind=kind,
        node_port=service_node_port(service) if service else None,
        service_type=(service.get("spec") or {}).get("type") if service else None,
        pod=pod,
        rollout_done=rollout_done(workload) if workload is not None else False,
    )
