"""Put the registry's objects into the cluster, wait for its pod, take them away.

``ensure_objects`` applies what :mod:`hookpkg.registry_objects` builds
(server-side apply, field manager ``devreg``): namespace when missing, the
workload, the Service; then deletes the workload of the other kind (the
persistence setting switched). ``wait_ready`` waits for the rollout to finish
and the pod to be Ready, and says why not when it times out, in the words of
the pod's kubelet (:func:`explain_pod`: the pod's status, its events, the last
log lines of a container that exited). ``remove`` is ``devreg down``.

Requests are kept to what is needed, because this runs at every watcher
start: on an unchanged, ready registry ``ensure_objects`` + ``wait_ready`` are
five requests (namespace, Service, two applies, one delete that finds
nothing), and the readiness comes from the apply's answer.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hookpkg import registry_objects as objects
from hookpkg.config import LocalRegistry
from hookpkg.errors import FatalError
from hookpkg.registry_objects import WorkloadKind
from watcher.cluster.kube import FIELD_MANAGER, ApiError, Kube

Log = Callable[[str], None]
# A GET of one object is cheap; `kubectl rollout status` (a watch) reacts at once.
POLL_INTERVAL = 0.1
POD_LOOK_INTERVAL = 1.0  # while waiting: how often the pod's status is looked at


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
class Problem:
    """One reason a pod is not Ready, in the words of the kubelet (or the scheduler):
    ``container registry: ImagePullBackOff: Back-off pulling image "…": …``."""

    where: str  # "container registry", "not scheduled", or "" (the pod as a whole)
    reason: str  # ImagePullBackOff, CrashLoopBackOff, Unhealthy, Unschedulable, FailedMount…
    message: str  # the kubelet's message, with the last exit and log lines of a crash

    def __str__(self) -> str:
        return ": ".join(part for part in (self.where, self.reason, self.message) if part)


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str
    ready: bool
    detail: str  # why it is not ready, in words ("" when ready)
    namespace: str = ""
    node: str | None = None
    problems: tuple[Problem, ...] = ()

    def lines(self) -> list[str]:
        """``registry pod NS/NAME container registry: Reason: message``, one per problem."""
        return [f"registry pod {self.namespace}/{self.name} {p}" for p in self.problems]


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


# Waiting reasons of a container that is being started, not failing.
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})
_NOT_READY = "running, not Ready"
LOG_LINES = 5  # of a crashed container, read through the kubelet
_LOG_LINE_CHARS = 300


def _event_time(event: Mapping[str, Any]) -> str:
    series = event.get("series") or {}
    stamp = str(
        event.get("lastTimestamp")
        or series.get("lastObservedTime")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )
    return stamp[:19]  # seconds: lastTimestamp has no fraction, eventTime has


def _event_container(event: Mapping[str, Any]) -> str | None:
    path = str((event.get("involvedObject") or {}).get("fieldPath") or "")
    m = re.fullmatch(r"spec\.(?:initContainers|containers|ephemeralContainers)\{(.+)\}", path)
    return m.group(1) if m else None


def _event_message(event: Mapping[str, Any]) -> str:
    count = int(event.get("count") or (event.get("series") or {}).get("count") or 1)
    message = " ".join(str(event.get("message") or "").split())
    return message + (f" ({count} times)" if count > 1 else "")


def _covered(message: str, text: str) -> bool:
    """Whether an event only repeats what the container's status already says."""
    message = " ".join(message.split())
    if message in text:
        return True
    _, _, rest = message.partition(": ")
    return len(rest) > 20 and rest in text


def _news(warnings: list[Mapping[str, Any]], text: str) -> Mapping[str, Any] | None:
    """The newest Warning that says more than ``text``: not the kubelet's echo of a
    waiting reason (``Error: ImagePullBackOff``, ``BackOff``), not a repetition."""
    for i in range(len(warnings) - 1, -1, -1):
        message = str(warnings[i].get("message") or "")
        if warnings[i].get("reason") == "BackOff" or message.startswith("Error: "):
            continue
        if not _covered(message, text):
            return warnings[i]
    return None


def _log_words(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return " | ".join(line[:_LOG_LINE_CHARS] for line in lines[-LOG_LINES:])


def _last_exit(cs: Mapping[str, Any], log: str | None) -> str:
    """``restarted 2 times, last exit code 3 (Error): <its message or last log lines>``."""
    last = (cs.get("lastState") or {}).get("terminated")
    if not last:
        return ""
    restarts = int(cs.get("restartCount") or 0)
    words = f"restarted {restarts} time{'s' if restarts != 1 else ''}, " if restarts else ""
    words += f"last exit code {last.get('exitCode')} ({last.get('reason') or 'Terminated'})"
    said = " ".join(str(last.get("message") or "").split()) or _log_words(log)
    return words + (f": {said}" if said else "")


def _container_problem(
    cs: Mapping[str, Any], events: list[Mapping[str, Any]], log: str | None
) -> Problem:
    where = f"container {cs.get('name')}"
    state = cs.get("state") or {}
    warnings = [e for e in events if e.get("type") == "Warning"]
    if "terminated" in state:
        t = state["terminated"] or {}
        said = " ".join(str(t.get("message") or "").split()) or _log_words(log)
        message = f"exit code {t.get('exitCode')}" + (f": {said}" if said else "")
        return Problem(where, str(t.get("reason") or "Terminated"), message)
    if "waiting" in state:
        w = state["waiting"] or {}
        reason = str(w.get("reason") or "Waiting")
        message = " ".join(str(w.get("message") or "").split())
        news = _news(warnings, f"{reason}: {message}")
        if news is not None:
            message += f"{'; ' if message else ''}{news.get('reason')}: {_event_message(news)}"
        elif reason in _STARTING and events:
            latest = events[-1]
            message += f"{'; ' if message else ''}latest event: {latest.get('reason')}: "
            message += _event_message(latest)
    else:
        # Running, not Ready: the probe's own words come only as events.
        probes = [e for e in warnings if e.get("reason") == "Unhealthy"]
        readiness = [e for e in probes if str(e.get("message")).startswith("Readiness probe")]
        if readiness or probes:
            reason, message = "Unhealthy", _event_message((readiness or probes)[-1])
        else:
            reason, message = _NOT_READY, "its readiness probe has not passed yet"
    last = _last_exit(cs, log)
    if last:
        message += f"{'; ' if message else ''}{last}"
    return Problem(where, reason, message)


def pod_problems(
    pod: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] = (),
    logs: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Why ``pod`` is not Ready, from its status, its ``events`` (the kubelet's) and
    ``logs`` (container -> its last lines, for one that exited). Pod-wide warnings
    (a volume that cannot be mounted, a sandbox that cannot be made) only when no
    container has a reason of its own."""
    status = pod.get("status") or {}
    logs = logs or {}
    problems: list[Problem] = []
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") != "True":
            problems.append(
                Problem(
                    "not scheduled",
                    str(c.get("reason") or "Unschedulable"),
                    " ".join(str(c.get("message") or "").split()),
                )
            )
    per_container: dict[str, list[Mapping[str, Any]]] = {}
    pod_wide: list[Mapping[str, Any]] = []
    for event in sorted(events, key=_event_time):
        container = _event_container(event)
        if container is not None:
            per_container.setdefault(container, []).append(event)
        elif event.get("type") == "Warning" and event.get("reason") != "FailedScheduling":
            pod_wide.append(event)
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    for cs in statuses:
        state = cs.get("state") or {}
        done = (state.get("terminated") or {}).get("exitCode") == 0
        if cs.get("ready") or done:
            continue
        name = str(cs.get("name"))
        problems.append(_container_problem(cs, per_container.get(name, []), logs.get(name)))
    if all(p.reason in _STARTING for p in problems):
        latest: dict[str, Mapping[str, Any]] = {}
        for event in pod_wide:
            latest.pop(str(event.get("reason")), None)
            latest[str(event.get("reason"))] = event
        problems += [Problem("", str(e.get("reason")), _event_message(e)) for e in latest.values()]
    return problems


def pod_state(
    pod: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] = (),
    logs: Mapping[str, str] | None = None,
) -> PodState:
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    problems = () if ready else tuple(pod_problems(pod, events, logs))
    meta = pod.get("metadata") or {}
    return PodState(
        name=str(meta["name"]),
        phase=str(status.get("phase") or "Unknown"),
        ready=ready,
        detail="; ".join(str(p) for p in problems),
        namespace=str(meta.get("namespace") or ""),
        node=(pod.get("spec") or {}).get("nodeName"),
        problems=problems,
    )


def explain_pod(kube: Kube, pod: Mapping[str, Any]) -> PodState:
    """:func:`pod_state` with what the kubelet said: the pod's events and, for a
    container that exited, its last log lines. Reading them is best effort (one
    request for the events, one per exited container); none for a Ready pod."""
    state = pod_state(pod)
    if state.ready:
        return state
    meta = pod.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta["name"])
    events: list[dict[str, Any]] = []
    with contextlib.suppress(FatalError):
        events = kube.list("Event", namespace, field_selector=f"involvedObject.uid={meta['uid']}")
    logs: dict[str, str] = {}
    status = pod.get("status") or {}
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        current = (cs.get("state") or {}).get("terminated")
        last = (cs.get("lastState") or {}).get("terminated")
        exited = current or last
        if cs.get("ready") or not exited or exited.get("message"):
            continue
        with contextlib.suppress(FatalError):
            text = kube.pod_log(
                namespace,
                name,
                container=str(cs.get("name")),
                previous=not current,
                tail_lines=LOG_LINES,
            )
            if text:
                logs[str(cs.get("name"))] = text
    return pod_state(pod, events, logs)


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


def current_pod(
    kube: Kube, namespace: str, name: str, kind: WorkloadKind, *, explain: bool = False
) -> PodState | None:
    """The pod serving now: the newest Ready one, else the newest. With ``explain``,
    a pod that is not Ready comes with what its kubelet said (:func:`explain_pod`)."""
    pod = _current_doc(kube, namespace, name, kind)
    if pod is None:
        return None
    return explain_pod(kube, pod) if explain else pod_state(pod)


def _current_doc(
    kube: Kube, namespace: str, name: str, kind: WorkloadKind
) -> dict[str, Any] | None:
    pods = registry_pods(kube, namespace, name, kind)
    return next((p for p in pods if pod_state(p).ready), pods[0] if pods else None)


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
    finished rollout).

    The workload is polled every ``POLL_INTERVAL`` s, its pod every
    ``POD_LOOK_INTERVAL`` s; a failure the kubelet reports meanwhile
    (``ErrImagePull``, ``CrashLoopBackOff``…) is logged once, as it appears.
    On timeout, raises FatalError with one line per problem of the pod, in the
    kubelet's words: pod, container, reason, message (from the pod's status and
    events; for a container that exited, its last exit code and log lines)."""
    if rollout_done(deployed.workload):
        return None
    ns, name, kind = deployed.namespace, deployed.name, deployed.workload_kind
    deadline = clock() + timeout
    log(f"waiting up to {timeout:g} s for the registry pod ({kind} {ns}/{name}) to be Ready")
    said: set[tuple[str, str, str]] = set()
    next_look = clock() + POD_LOOK_INTERVAL
    while True:
        workload = kube.get(kind, ns, name)
        if workload is not None and rollout_done(workload):
            return current_pod(kube, ns, name, kind)
        now = clock()
        if now >= deadline:
            break
        if now >= next_look:
            next_look = now + POD_LOOK_INTERVAL
            _say_news(kube, _current_doc(kube, ns, name, kind), said, log)
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - clock())))
    pod = current_pod(kube, ns, name, kind, explain=True)
    hint = f"`kubectl --context {kube.context} -n {ns} describe {kind.lower()} {name}`"
    if pod is None:
        raise FatalError(
            f"the registry ({kind} {ns}/{name}) has no pod after {timeout:g} s: "
            f"{_why_no_pod(workload)}. Look at {hint}, or raise --timeout"
        )
    look = (
        f"look at `kubectl --context {kube.context} -n {ns} describe pod {pod.name}`, "
        "or raise --timeout"
    )
    if pod.ready:
        # Ready, but the rollout did not finish (an old pod lingers): say so.
        raise FatalError(
            f"the registry pod {ns}/{pod.name} is Ready, but the rollout of {kind} {ns}/{name} "
            f"has not finished after {timeout:g} s; {look}"
        )
    where = f"phase {pod.phase}" + (f", on node {pod.node}" if pod.node else "")
    lines = pod.lines() or [f"registry pod {ns}/{pod.name}: no reason reported yet"]
    raise FatalError(
        f"the registry pod {ns}/{pod.name} is not Ready after {timeout:g} s ({where}):\n"
        + "".join(f"  {line}\n" for line in lines)
        + look
    )


def _say_news(
    kube: Kube, pod: Mapping[str, Any] | None, said: set[tuple[str, str, str]], log: Log
) -> None:
    """Log each failure of the pod once, when the kubelet first reports it, with its
    events and log lines (:func:`explain_pod`); not the normal steps of a start
    (ContainerCreating, a probe that has not passed yet)."""
    if pod is None:
        return
    state = pod_state(pod)

    def key(problem: Problem) -> tuple[str, str, str]:
        return (state.name, problem.where, problem.reason)

    news = {
        key(p)
        for p in state.problems
        if p.reason not in _STARTING and p.reason != _NOT_READY and key(p) not in said
    }
    if not news:
        return
    for problem in explain_pod(kube, pod).problems:
        if key(problem) in news:
            said.add(key(problem))
            log(f"registry pod {state.namespace}/{state.name} {problem}")


# --- down -------------------------------------------------------------------------------------


def registry_claims(kube: Kube, namespace: str, name: str) -> list[str]:
    """The volume claims of registry ``name``'s StatefulSet in ``namespace``
    (``<template>-<statefulset>-<ordinal>``, as ``registry_objects.claim_names``)."""
    claim = re.compile(rf"{re.escape(name)}-{re.escape(name)}-\d+\Z")
    names = (str(p["metadata"]["name"]) for p in kube.list("PersistentVolumeClaim", namespace))
    return [n for n in names if claim.match(n)]


def remove(kube: Kube, namespace: str, name: str, *, purge: bool) -> list[str]:
    """Delete the registry's objects; with ``purge`` its volume claims too.
    Returns what was deleted (``Deployment/registry``)."""
    removed: list[str] = []
    for kind in ("Deployment", "StatefulSet", "Service"):
        if kube.delete(kind, namespace, name):
            removed.append(f"{kind}/{name}")
    if purge:
        for pvc in registry_claims(kube, namespace, name):
            if kube.delete("PersistentVolumeClaim", namespace, pvc):
                removed.append(f"PersistentVolumeClaim/{pvc}")
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
    pod = current_pod(kube, namespace, name, kind, explain=True) if kind is not None else None
    return Observed(
        namespace=namespace,
        name=name,
        workload_kind=kind,
        node_port=service_node_port(service) if service else None,
        service_type=(service.get("spec") or {}).get("type") if service else None,
        pod=pod,
        rollout_done=rollout_done(workload) if workload is not None else False,
    )
