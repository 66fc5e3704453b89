"""The registry's pod restarted by a real kubelet (scripts/testenv part ``nodes``).

With ``localRegistry.persistence.enabled`` the StatefulSet's claim is bound to a
hostPath volume of the test environment's provisioner, the real kubelet mounts it, and
the registry (uid 1000, read-only root filesystem) writes its images there: a new pod
serves what the old one was given, at ``localhost:<nodePort>``, with no new push.

Without persistence the registry keeps its images in an emptyDir, which a new pod gets
empty: ``devreg build`` finds the manifest gone (``HEAD`` 404) and pushes the image
again from the local engine (state ``pushed``, not ``built``), and a pod on each real
node pulls and runs it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.plugins.testenv import RealNode, TestEnv
from tests.watcher.e2e import copy_example, devreg, wait_for
from tests.watcher.pods import registry_pod, run_on_each_node
from watcher.build.pipeline import MANIFEST_TYPES

pytestmark = [pytest.mark.testenv, pytest.mark.slow]


def project(tmp_path: Path, *, persistent: bool) -> Path:
    """examples/hello under a repository name of its own; its script prints a marker
    and exits, so that a pod running it succeeds."""
    config = copy_example(tmp_path / "hello", image=f"ghcr.io/example/rs-{uuid.uuid4().hex[:8]}")
    if persistent:
        text = config.read_text().replace(
            "  localbuild: true\n",
            "  localbuild: true\n  persistence:\n    enabled: true\n    size: 1Gi\n",
        )
        assert "persistence" in text
        config.write_text(text)
    (config.parent / "src" / "hello.sh").write_text('#!/bin/sh\necho "ran $(basename $0)"\n')
    return config.parent


def manifest_status(node_port: int, reference: str) -> int | None:
    """``GET /v2/<repo>/manifests/<tag>`` at ``localhost:<nodePort>``: the status, or
    None when nothing answers there (yet)."""
    name, _, tag = reference.rpartition(":")
    repository = name.split("/", 1)[1]
    request = urllib.request.Request(
        f"http://localhost:{node_port}/v2/{repository}/manifests/{tag}",
        headers={"Accept": MANIFEST_TYPES},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return None


def endpoint_addresses(core: client.CoreV1Api, namespace: str, name: str = "registry") -> set[str]:
    """The ready addresses the Service's EndpointSlices list."""
    slices = client.DiscoveryV1Api(core.api_client).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={name}"
    )
    return {
        address
        for piece in slices.items
        for endpoint in piece.endpoints or []
        if endpoint.conditions is None or endpoint.conditions.ready is not False
        for address in endpoint.addresses
    }


def ready_on_a_real_node(pod: Any, real_nodes: list[RealNode]) -> bool:
    statuses = pod.status.container_statuses or []
    return (
        pod.status.phase == "Running"
        and bool(statuses)
        and all(c.ready for c in statuses)
        and pod.spec.node_name in {n.name for n in real_nodes}
    )


def replace_registry_pod(
    core: client.CoreV1Api, namespace: str, real_nodes: list[RealNode]
) -> tuple[Any, Any]:
    """Delete the registry pod; wait for its successor, Running and Ready on a real
    node, as the kubelet reports it. Returns (old, new)."""
    old = registry_pod(core, namespace)
    assert old is not None and ready_on_a_real_node(old, real_nodes), old
    core.delete_namespaced_pod(old.metadata.name, namespace, grace_period_seconds=0)

    def successor() -> Any:
        pod = registry_pod(core, namespace)
        if pod is None or pod.metadata.uid == old.metadata.uid:
            return None
        return pod if ready_on_a_real_node(pod, real_nodes) else None

    return old, wait_for(successor, timeout=120, what="a new Ready registry pod")


def build(project: Path, namespace: str) -> tuple[dict[str, Any], str]:
    done = devreg("build", "--namespace", namespace, "--format", "json", cwd=project)
    return json.loads(done.stdout)["images"]["app"], done.stderr


def test_persistent_registry_keeps_its_images_across_a_new_pod(
    testenv: TestEnv,
    real_nodes: list[RealNode],
    core: client.CoreV1Api,
    namespace: str,
    tmp_path: Path,
) -> None:
    hello = project(tmp_path, persistent=True)
    up = devreg("up", "--namespace", namespace, "--format", "json", "--timeout", "90", cwd=hello)
    endpoint = json.loads(up.stdout)
    assert endpoint["workload_kind"] == "StatefulSet", endpoint
    node_port = endpoint["node_port"]

    claim = core.read_namespaced_persistent_volume_claim("registry-registry-0", namespace)
    assert claim.status.phase == "Bound"
    volume = core.read_persistent_volume(claim.spec.volume_name)
    data_dir = Path(volume.spec.host_path.path)
    pod = registry_pod(core, namespace)
    assert pod is not None and pod.metadata.name == "registry-0"
    assert ready_on_a_real_node(pod, real_nodes), pod.status

    first, err = build(hello, namespace)
    assert first["state"] == "built", err
    reference = first["reference"]
    assert reference.startswith(f"localhost:{node_port}/example/rs-")
    assert manifest_status(node_port, reference) == 200
    # The registry (uid 1000) wrote into the claim's directory on this machine.
    blobs = data_dir / "docker" / "registry" / "v2" / "blobs"
    assert blobs.is_dir() and blobs.stat().st_uid == 1000

    old, new = replace_registry_pod(core, namespace, real_nodes)
    assert new.metadata.name == "registry-0"  # the StatefulSet's pod, with the same claim
    # Served by the new pod before any build: the images were on the volume. (The
    # node port may route to the new pod a moment after it turned Ready.)
    status = wait_for(
        lambda: manifest_status(node_port, reference), timeout=30, what="the registry to answer"
    )
    assert status == 200

    again, err = build(hello, namespace)
    assert (again["state"], again["reference"]) == ("up-to-date", reference), err
    assert "[app] pushing" not in err and "[app] building" not in err
    assert run_on_each_node(core, namespace, reference, real_nodes) == {
        n.name: "ran hello.sh" for n in real_nodes
    }


def test_emptydir_registry_gets_the_images_again_after_a_new_pod(
    testenv: TestEnv,
    real_nodes: list[RealNode],
    core: client.CoreV1Api,
    namespace: str,
    tmp_path: Path,
) -> None:
    hello = project(tmp_path, persistent=False)
    up = devreg("up", "--namespace", namespace, "--format", "json", "--timeout", "90", cwd=hello)
    endpoint = json.loads(up.stdout)
    assert endpoint["workload_kind"] == "Deployment", endpoint
    node_port = endpoint["node_port"]

    first, err = build(hello, namespace)
    assert first["state"] == "built", err
    reference = first["reference"]
    assert manifest_status(node_port, reference) == 200

    _, new = replace_registry_pod(core, namespace, real_nodes)
    # The old pod's container may answer on the node port until the Service's endpoints
    # (and then kube-proxy's rules) leave it: wait for the endpoints to list the new pod
    # alone, then for the node port to answer from it.
    wait_for(
        lambda: endpoint_addresses(core, namespace) == {new.status.pod_ip},
        timeout=30,
        what="the Service's endpoints to list only the new pod",
    )
    # The new pod's emptyDir is empty: the manifest is gone (404 from the new registry).
    # A 200 here can only be the old pod, still in kube-proxy's rules for a moment.
    wait_for(
        lambda: manifest_status(node_port, reference) == 404,
        timeout=30,
        what="the new (empty) registry to answer 404 for the old manifest",
    )

    healed, err = build(hello, namespace)
    # Same content, same tag; not built again, pushed again from the local engine.
    assert (healed["state"], healed["reference"]) == ("pushed", reference), err
    assert f"[app] pushing {reference}" in err
    assert f"[app] pushed: {reference}" in err
    assert "[app] building" not in err
    assert manifest_status(node_port, reference) == 200
    assert run_on_each_node(core, namespace, reference, real_nodes) == {
        n.name: "ran hello.sh" for n in real_nodes
    }
