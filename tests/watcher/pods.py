"""Pods on the test environment's real nodes, for the end-to-end tests: a pod per
node that pulls an image and runs it, and the registry pod devreg deployed."""

from __future__ import annotations

import uuid
from typing import Any

from kubernetes import client

from tests.plugins.testenv import RealNode
from tests.watcher.e2e import wait_for


def run_on_each_node(
    core: client.CoreV1Api, namespace: str, image: str, nodes: list[RealNode]
) -> dict[str, str]:
    """One pod per real node, pinned to it, pulling ``image`` (Always: through that
    node's loopback, never a copy already there) and running it; node -> output."""
    run_id = uuid.uuid4().hex[:6]
    names = {}
    for node in nodes:
        name = f"run-{run_id}-{node.name}"
        core.create_namespaced_pod(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "nodeName": node.name,
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "app", "image": image, "imagePullPolicy": "Always"}],
                },
            },
        )
        names[node.name] = name

    def finished(name: str) -> str | None:
        status = core.read_namespaced_pod(name, namespace).status
        for c in status.container_statuses or []:
            waiting = c.state.waiting
            if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
                raise AssertionError(f"{name}: {waiting.reason}: {waiting.message}")
        return status.phase if status.phase in ("Succeeded", "Failed") else None

    out = {}
    for node, name in names.items():
        phase = wait_for(lambda n=name: finished(n), timeout=120, what=f"pod {name} to finish")
        pod = core.read_namespaced_pod(name, namespace)
        assert phase == "Succeeded", pod.status
        assert pod.spec.node_name == node
        assert pod.status.container_statuses[0].image_id  # the kubelet pulled it by digest
        out[node] = core.read_namespaced_pod_log(name, namespace).strip()
    return out


def registry_pod(core: client.CoreV1Api, namespace: str, name: str = "registry") -> Any:
    """The one live pod of devreg's registry, or None (none yet, or two while replaced)."""
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={name}").items
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    return live[0] if len(live) == 1 else None
