"""Deploying the registry into a real API server (scripts/testenv: kube-apiserver,
controller-manager, scheduler, real nodes whose kubelets run the pods).

Objects are read back with the official client (an independent reader),
field by field. Each test works in its own namespace. The readiness rules and
the words of a not-Ready pod are also table-tested on pod, event and workload
documents shaped as a kubelet writes them (tests/watcher/registry_failures_test.py
has the real kubelet's own: image pull, crash, a probe that never passes).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from hookpkg.config import LocalRegistry, Persistence
from hookpkg.errors import FatalError
from watcher.cluster import deploy as deploy
from watcher.cluster.kube import Kube

DEFAULT = LocalRegistry()


def wait_for(condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.1)


class Reader:
    """Raw JSON from the API server through the official client."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)

    def _read(self, fn: Any, *args: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = fn(*args, _preload_content=False)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        data: dict[str, Any] = json.loads(resp.data)
        return data

    def deployment(self, ns: str, name: str = "registry") -> dict[str, Any] | None:
        return self._read(self.apps.read_namespaced_deployment, name, ns)

    def statefulset(self, ns: str, name: str = "registry") -> dict[str, Any] | None:
        return self._read(self.apps.read_namespaced_stateful_set, name, ns)

    def service(self, ns: str, name: str = "registry") -> dict[str, Any] | None:
        return self._read(self.core.read_namespaced_service, name, ns)

    def namespace(self, ns: str) -> dict[str, Any] | None:
        return self._read(self.core.read_namespace, ns)

    def claims(self, ns: str) -> list[str]:
        resp = self.core.list_namespaced_persistent_volume_claim(ns, _preload_content=False)
        return sorted(i["metadata"]["name"] for i in json.loads(resp.data)["items"])


@pytest.fixture
def reader(kube_api_client: Any) -> Reader:
    return Reader(kube_api_client)


@pytest.fixture
def kube(testenv: Any) -> Iterator[Kube]:
    with Kube(testenv.context) as k:
        yield k


@pytest.fixture
def namespace(testenv: Any, kube_api_client: Any) -> Iterator[str]:
    """A fresh namespace name (devreg creates it); deleted afterwards."""
    from kubernetes import client

    name = f"devreg-t-{secrets.token_hex(4)}"
    yield name
    core = client.CoreV1Api(kube_api_client)
    with contextlib.suppress(Exception):  # never created by the test
        core.delete_namespace(name)


def ensure(kube: Kube, registry: LocalRegistry, ns: str, *, ready: bool = False) -> deploy.Deployed:
    """Apply the objects; with ``ready``, also wait until the pod is Ready. Most tests
    here check objects, not readiness: the real nodes run the pods, and the default
    pod's buildkitd sidecar has an image (moby/buildkit) no test node holds or can
    pull, so that pod never becomes Ready (``localbuild: true`` pods do)."""
    deployed = deploy.ensure_objects(kube, registry, ns)
    if ready:
        deploy.wait_ready(kube, deployed, timeout=60)
    return deployed


def test_objects_are_what_spec_3_says(kube: Kube, namespace: str, reader: Reader) -> None:
    deployed = ensure(kube, DEFAULT, namespace)

    ns = reader.namespace(namespace)
    assert ns is not None and ns["status"]["phase"] == "Active"

    dep = reader.deployment(namespace)
    assert dep is not None
    assert dep["metadata"]["labels"]["app"] == "registry"
    managers = {(f["manager"], f["operation"]) for f in dep["metadata"]["managedFields"]}
    assert ("devreg", "Apply") in managers
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["selector"] == {"matchLabels": {"app": "registry"}}
    assert spec["strategy"]["type"] == "Recreate"
    template = spec["template"]
    assert template["metadata"]["labels"] == {"app": "registry"}
    assert template["metadata"]["annotations"] == {
        "container.apparmor.security.beta.kubernetes.io/buildkitd": "unconfined"
    }
    pod = template["spec"]
    assert pod["enableServiceLinks"] is False
    registry, buildkitd = pod["containers"]
    assert registry["name"] == "registry"
    assert registry["image"] == "registry:2.8.1"
    assert registry["env"] == [{"name": "REGISTRY_HTTP_ADDR", "value": ":5000"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert registry[probe]["httpGet"]["path"] == "/v2/"
        assert registry[probe]["httpGet"]["port"] == 5000
    assert registry["securityContext"] == {
        "runAsUser": 1000,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
    }
    assert registry["volumeMounts"] == [{"name": "registry", "mountPath": "/var/lib/registry"}]
    assert buildkitd["name"] == "buildkitd"
    assert buildkitd["image"] == "moby/buildkit:master-rootless"
    assert buildkitd["args"] == ["--oci-worker-no-process-sandbox"]
    assert buildkitd["securityContext"] == {
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "seccompProfile": {"type": "Unconfined"},
    }
    assert buildkitd["readinessProbe"]["exec"]["command"] == ["buildctl", "debug", "workers"]
    assert buildkitd["volumeMounts"] == [
        {"name": "buildkit", "mountPath": "/home/user/.local/share/buildkit"}
    ]
    assert {v["name"]: v for v in pod["volumes"]} == {
        "registry": {"name": "registry", "emptyDir": {}},
        "buildkit": {"name": "buildkit", "emptyDir": {}},
    }

    svc = reader.service(namespace)
    assert svc is not None
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["selector"] == {"app": "registry"}
    (port,) = svc["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("registry", 5000, 5000)
    assert 30000 <= port["nodePort"] <= 32767
    assert deployed.node_port == port["nodePort"]
    assert reader.statefulset(namespace) is None


def test_localbuild_true_has_registry_container_only(
    kube: Kube, namespace: str, reader: Reader
) -> None:
    ensure(kube, replace(DEFAULT, localbuild=True), namespace, ready=True)
    dep = reader.deployment(namespace)
    assert dep is not None
    pod = dep["spec"]["template"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["registry"]
    assert "annotations" not in pod["metadata"]


def _applied(obj: dict[str, Any]) -> tuple[Any, ...]:
    """What an apply can change: spec, labels, generation, field ownership
    (status updates by the controllers come and go on their own)."""
    managed = [f for f in obj["metadata"]["managedFields"] if f.get("subresource") != "status"]
    for f in managed:
        f.pop("time", None)
    return obj["spec"], obj["metadata"].get("labels"), obj["metadata"].get("generation"), managed


def test_apply_twice_is_a_no_op(kube: Kube, namespace: str, reader: Reader) -> None:
    local = replace(DEFAULT, localbuild=True)
    ensure(kube, local, namespace, ready=True)
    dep_before, svc_before = reader.deployment(namespace), reader.service(namespace)
    again = deploy.ensure_objects(kube, local, namespace)
    dep_after, svc_after = reader.deployment(namespace), reader.service(namespace)
    assert dep_before is not None and dep_after is not None
    assert svc_before is not None and svc_after is not None
    assert _applied(dep_after) == _applied(dep_before)
    # A Service has no status churn: not even its resourceVersion moves.
    assert svc_after["metadata"]["resourceVersion"] == svc_before["metadata"]["resourceVersion"]
    # Ready already: the apply's own answer says so, no polling needed.
    assert deploy.rollout_done(again.workload)
    assert deploy.wait_ready(kube, again, timeout=0) is None


@pytest.mark.parametrize(
    ("change", "check"),
    [
        pytest.param(
            {"image": "registry:2.8.3"},
            lambda dep, svc: (
                dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry:2.8.3"
            ),
            id="image",
        ),
        pytest.param(
            {"port": 5001},
            lambda dep, svc: (
                dep["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == ":5001"
                and dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"][
                    "port"
                ]
                == 5001
                and [p["port"] for p in svc["spec"]["ports"]] == [5001]
            ),
            id="port",
        ),
        pytest.param(
            {"localbuild": True},
            lambda dep, svc: len(dep["spec"]["template"]["spec"]["containers"]) == 1,
            id="localbuild",
        ),
        pytest.param(
            {"buildkit_image": "moby/buildkit:v0.20.0-rootless"},
            lambda dep, svc: (
                dep["spec"]["template"]["spec"]["containers"][1]["image"]
                == "moby/buildkit:v0.20.0-rootless"
            ),
            id="buildkit-image",
        ),
    ],
)
def test_changed_config_reaches_the_live_object(
    kube: Kube,
    namespace: str,
    reader: Reader,
    change: dict[str, Any],
    check: Callable[[dict[str, Any], dict[str, Any]], bool],
) -> None:
    first = ensure(kube, DEFAULT, namespace)
    second = ensure(kube, replace(DEFAULT, **change), namespace)
    dep, svc = reader.deployment(namespace), reader.service(namespace)
    assert dep is not None and svc is not None
    assert check(dep, svc)
    # The node port (and so every image URL) survives a changed port.
    assert second.node_port == first.node_port
    wait_for(
        lambda: (
            (d := reader.deployment(namespace))
            and d["status"].get("observedGeneration") == d["metadata"]["generation"]
        ),
        what="the Deployment controller to see the new spec",
    )


def test_persistence_switches_the_workload_kind_and_keeps_claims(
    kube: Kube, namespace: str, reader: Reader
) -> None:
    ensure(kube, DEFAULT, namespace)
    persistent = replace(DEFAULT, persistence=Persistence(enabled=True, size="1Gi"))
    deployed = ensure(kube, persistent, namespace)
    assert deployed.workload_kind == "StatefulSet"
    sts = reader.statefulset(namespace)
    assert sts is not None
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "registry"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert sts["spec"]["serviceName"] == "registry"
    wait_for(lambda: reader.deployment(namespace) is None, what="the Deployment to go")
    wait_for(lambda: reader.claims(namespace) == ["registry-registry-0"], what="the claim")

    ensure(kube, DEFAULT, namespace)
    assert reader.deployment(namespace) is not None
    wait_for(lambda: reader.statefulset(namespace) is None, what="the StatefulSet to go")
    assert reader.claims(namespace) == ["registry-registry-0"]


@pytest.mark.parametrize(
    ("purge", "claims_left"),
    [
        pytest.param(False, ["registry-registry-0"], id="keeps-claims"),
        pytest.param(True, [], id="purge"),
    ],
)
def test_down(
    kube: Kube, namespace: str, reader: Reader, purge: bool, claims_left: list[str]
) -> None:
    persistent = replace(DEFAULT, persistence=Persistence(enabled=True, size="1Gi"))
    ensure(kube, persistent, namespace)
    wait_for(lambda: reader.claims(namespace), what="the claim")
    removed = deploy.remove(kube, namespace, "registry", purge=purge)
    expected = ["StatefulSet/registry", "Service/registry"]
    if purge:
        expected.append("PersistentVolumeClaim/registry-registry-0")
    assert removed == expected
    assert reader.statefulset(namespace) is None
    assert reader.service(namespace) is None
    # A claim in use is deleted once its pod is gone (the protection finalizer).
    wait_for(lambda: reader.claims(namespace) == claims_left, what=f"claims {claims_left}")
    assert deploy.remove(kube, namespace, "registry", purge=purge) == []


def test_never_ready_names_pod_phase_and_reason(kube: Kube, namespace: str) -> None:
    # A storage class that does not exist: the claim stays Pending, so the
    # pod is never scheduled. A real fault, made without touching the nodes.
    broken = replace(
        DEFAULT,
        persistence=Persistence(enabled=True, size="1Gi", storage_class_name="no-such-class"),
    )
    deployed = deploy.ensure_objects(kube, broken, namespace)
    started = time.monotonic()
    with pytest.raises(FatalError) as e:
        deploy.wait_ready(kube, deployed, timeout=3)
    assert time.monotonic() - started < 10
    message = str(e.value)
    assert f"the registry pod {namespace}/registry-0 is not Ready after 3 s" in message
    assert "phase Pending" in message
    assert "not scheduled: Unschedulable" in message
    assert "persistentvolumeclaim" in message.lower()
    assert "--timeout" in message


def test_namespace_being_deleted(kube: Kube, namespace: str, kube_api_client: Any) -> None:
    from kubernetes import client

    core = client.CoreV1Api(kube_api_client)
    core.create_namespace({"metadata": {"name": namespace, "finalizers": ["devreg.test/hold"]}})
    core.delete_namespace(namespace)
    try:
        with pytest.raises(FatalError, match=f"namespace '{namespace}' is being deleted"):
            deploy.ensure_objects(kube, DEFAULT, namespace)
    finally:
        core.patch_namespace(namespace, {"metadata": {"finalizers": None}})


def test_foreign_service_of_another_type(
    kube: Kube, namespace: str, kube_api_client: Any, reader: Reader
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(kube_api_client)
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "registry"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80}], "selector": {"app": "web"}},
        },
    )
    with pytest.raises(FatalError) as e:
        deploy.ensure_objects(kube, DEFAULT, namespace)
    message = str(e.value)
    assert f"Service {namespace}/registry already exists as type ClusterIP" in message
    assert "localRegistry.name" in message
    assert reader.deployment(namespace) is None  # refused before anything was applied
    svc = reader.service(namespace)
    assert svc is not None and svc["spec"]["type"] == "ClusterIP"


def test_fields_set_by_another_manager_are_not_overwritten(
    kube: Kube, namespace: str, kube_api_client: Any
) -> None:
    from kubernetes import client

    ensure(kube, DEFAULT, namespace)
    apps = client.AppsV1Api(kube_api_client)
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "registry", "namespace": namespace},
        "spec": {
            "template": {"spec": {"containers": [{"name": "registry", "image": "someone/else:1"}]}},
        },
    }
    apps.patch_namespaced_deployment(
        "registry",
        namespace,
        body,
        field_manager="someone-else",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    with pytest.raises(FatalError) as e:
        deploy.ensure_objects(kube, DEFAULT, namespace)
    assert "has fields set by someone-else" in str(e.value)
    assert "devreg down" in str(e.value)


def test_limited_context_names_verb_resource_namespace(testenv: Any) -> None:
    with Kube(testenv.limited_context) as limited, pytest.raises(FatalError) as e:
        deploy.ensure_objects(limited, DEFAULT, testenv.limited_namespace)
    message = str(e.value)
    assert f"context '{testenv.limited_context}'" in message
    assert "may not patch deployments.apps" in message
    assert f"in namespace '{testenv.limited_namespace}'" in message


# --- pure: readiness and the words for a pod that is not Ready ------------------------------


def pod_doc(phase: str, ready: bool, **status: Any) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {
        "metadata": {"name": "registry-abc"},
        "status": {"phase": phase, "conditions": conditions + status.pop("extra", []), **status},
    }


@pytest.mark.parametrize(
    ("pod", "ready", "detail"),
    [
        pytest.param(pod_doc("Running", True), True, "", id="ready"),
        pytest.param(
            pod_doc(
                "Pending",
                False,
                containerStatuses=[
                    {
                        "name": "registry",
                        "ready": False,
                        "state": {
                            "waiting": {
                                "reason": "ImagePullBackOff",
                                "message": 'Back-off pulling image "registry:2.8.1"',
                            }
                        },
                    }
                ],
            ),
            False,
            'container registry: ImagePullBackOff: Back-off pulling image "registry:2.8.1"',
            id="image-pull",
        ),
        pytest.param(
            pod_doc(
                "Running",
                False,
                containerStatuses=[
                    {
                        "name": "registry",
                        "ready": False,
                        "state": {"terminated": {"reason": "Error", "exitCode": 1}},
                    }
                ],
            ),
            False,
            "container registry: Error: exit code 1",
            id="crashed",
        ),
        pytest.param(
            pod_doc(
                "Running",
                False,
                containerStatuses=[{"name": "registry", "ready": False, "state": {"running": {}}}],
            ),
            False,
            "container registry: running, not Ready: its readiness probe has not passed yet",
            id="probe-failing",
        ),
        pytest.param(
            pod_doc(
                "Pending",
                False,
                extra=[
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/2 nodes are available",
                    }
                ],
            ),
            False,
            "not scheduled: Unschedulable: 0/2 nodes are available",
            id="unschedulable",
        ),
    ],
)
def test_pod_state(pod: dict[str, Any], ready: bool, detail: str) -> None:
    state = deploy.pod_state(pod)
    assert (state.name, state.ready, state.detail) == ("registry-abc", ready, detail)


def event(
    reason: str, message: str, *, container: str | None = "registry", count: int = 1, at: str = ""
) -> dict[str, Any]:
    """An event as the kubelet records it about a pod (core/v1)."""
    involved: dict[str, Any] = {"kind": "Pod", "name": "registry-abc"}
    if container:
        involved["fieldPath"] = f"spec.containers{{{container}}}"
    return {
        "involvedObject": involved,
        "type": "Normal" if reason in ("Pulling", "Scheduled", "Started") else "Warning",
        "reason": reason,
        "message": message,
        "count": count,
        "lastTimestamp": at or "2026-01-01T00:00:00Z",
    }


MISSING_DNS = event(
    "MissingClusterDNS", "kubelet does not have ClusterDNS IP configured", container=None
)


def running(**fields: Any) -> dict[str, Any]:
    return {"name": "registry", "ready": False, "state": {"running": {}}, **fields}


@pytest.mark.parametrize(
    ("statuses", "events", "logs", "expected"),
    [
        pytest.param(
            [running()],
            [
                MISSING_DNS,
                event("Unhealthy", 'Liveness probe failed: Get "http://p:5000/v2/": refused'),
                event(
                    "Unhealthy",
                    'Readiness probe failed: Get "http://p:5000/v2/": refused',
                    count=14,
                ),
            ],
            {},
            'container registry: Unhealthy: Readiness probe failed: Get "http://p:5000/v2/": '
            "refused (14 times)",
            id="probe-from-events",
        ),
        pytest.param(
            [
                {
                    "name": "registry",
                    "ready": False,
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "r:1"',
                        }
                    },
                }
            ],
            [
                event("Pulling", 'Pulling image "r:1"'),
                event("Failed", 'Failed to pull image "r:1": rpc error: not found', count=2),
                event("Failed", "Error: ErrImagePull", count=2),
                event("BackOff", 'Back-off pulling image "r:1"'),
                event("Failed", "Error: ImagePullBackOff"),
            ],
            {},
            # An older kubelet's back-off message lacks the cause: the event has it; the
            # kubelet's echoes of the reason are left out.
            'container registry: ImagePullBackOff: Back-off pulling image "r:1"; '
            'Failed: Failed to pull image "r:1": rpc error: not found (2 times)',
            id="pull-cause-from-events",
        ),
        pytest.param(
            [
                {
                    "name": "registry",
                    "ready": False,
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "r:1": ErrImagePull: failed to '
                            "resolve reference: connection refused",
                        }
                    },
                }
            ],
            [
                event(
                    "Failed",
                    'Failed to pull image "r:1": failed to resolve reference: connection refused',
                )
            ],
            {},
            'container registry: ImagePullBackOff: Back-off pulling image "r:1": ErrImagePull: '
            "failed to resolve reference: connection refused",
            id="pull-cause-said-once",
        ),
        pytest.param(
            [
                {
                    "name": "registry",
                    "ready": False,
                    "restartCount": 2,
                    "state": {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": "back-off 20s restarting failed container=registry",
                        }
                    },
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}},
                }
            ],
            [event("BackOff", "Back-off restarting failed container registry", count=5)],
            {"registry": "starting\nconfiguration error: no storage driver\n"},
            "container registry: CrashLoopBackOff: back-off 20s restarting failed "
            "container=registry; restarted 2 times, last exit code 3 (Error): starting | "
            "configuration error: no storage driver",
            id="crash-loop-with-log",
        ),
        pytest.param(
            [
                running(
                    restartCount=1,
                    lastState={
                        "terminated": {"exitCode": 2, "reason": "Error", "message": "bad config"}
                    },
                )
            ],
            [],
            {"registry": "not used: the termination message says it"},
            "container registry: running, not Ready: its readiness probe has not passed yet; "
            "restarted 1 time, last exit code 2 (Error): bad config",
            id="restarted-termination-message",
        ),
        pytest.param(
            [
                {
                    "name": "registry",
                    "ready": False,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                }
            ],
            [
                MISSING_DNS,
                event("FailedMount", "MountVolume.SetUp failed: old", container=None),
                event(
                    "FailedMount",
                    'MountVolume.SetUp failed for volume "registry": not found',
                    container=None,
                    count=3,
                    at="2026-01-01T00:00:09Z",
                ),
            ],
            {},
            # Only when no container has a reason of its own: the pod's warnings, newest
            # per reason.
            [
                "container registry: ContainerCreating",
                "MissingClusterDNS: kubelet does not have ClusterDNS IP configured",
                'FailedMount: MountVolume.SetUp failed for volume "registry": not found (3 times)',
            ],
            id="pod-wide-warnings",
        ),
    ],
)
def test_pod_problems_from_status_events_and_logs(
    statuses: list[dict[str, Any]],
    events: list[dict[str, Any]],
    logs: dict[str, str],
    expected: str | list[str],
) -> None:
    pod = pod_doc("Running", False, containerStatuses=statuses)
    pod["metadata"]["namespace"] = "ns"
    pod["spec"] = {"nodeName": "node-1"}
    state = deploy.pod_state(pod, events, logs)
    problems = [expected] if isinstance(expected, str) else expected
    assert state.lines() == [f"registry pod ns/registry-abc {p}" for p in problems]
    assert state.detail == "; ".join(problems)
    assert state.node == "node-1"
