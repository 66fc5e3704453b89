"""The objects of SPEC §3, field by field, as pure data (no cluster)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hookpkg import registry_objects as objects
from hookpkg.config import LocalRegistry, Persistence
from hookpkg.errors import FatalError

DEFAULT = LocalRegistry()
LOCALBUILD = replace(DEFAULT, localbuild=True)
PERSISTENT = replace(DEFAULT, persistence=Persistence(enabled=True, size="7Gi"))
PERSISTENT_CLASS = replace(
    DEFAULT, persistence=Persistence(enabled=True, size="1Gi", storage_class_name="fast")
)
CUSTOM = replace(
    DEFAULT,
    name="reg",
    port=5123,
    image="example.com/registry:3",
    buildkit_image="example.com/buildkit:1",
)


def get(obj: Any, path: str) -> Any:
    """``spec.template.spec.containers[0].image``."""
    for part in path.replace("]", "").replace("[", ".").split("."):
        obj = obj[int(part)] if part.isdigit() else obj[part]
    return obj


@pytest.mark.parametrize(
    ("registry", "path", "expected"),
    [
        pytest.param(DEFAULT, "kind", "Deployment", id="deployment-when-not-persistent"),
        pytest.param(DEFAULT, "apiVersion", "apps/v1", id="apps-v1"),
        pytest.param(DEFAULT, "metadata.name", "registry", id="default-name"),
        pytest.param(DEFAULT, "metadata.namespace", "ns1", id="namespace"),
        pytest.param(DEFAULT, "metadata.labels.app", "registry", id="label-app"),
        pytest.param(DEFAULT, "spec.replicas", 1, id="one-replica"),
        pytest.param(DEFAULT, "spec.selector.matchLabels", {"app": "registry"}, id="selector"),
        pytest.param(DEFAULT, "spec.strategy.type", "Recreate", id="never-two-pods"),
        pytest.param(
            DEFAULT, "spec.template.metadata.labels", {"app": "registry"}, id="template-labels"
        ),
        pytest.param(
            DEFAULT, "spec.template.spec.enableServiceLinks", False, id="no-service-links"
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.securityContext",
            {"fsGroup": 1000, "fsGroupChangePolicy": "OnRootMismatch"},
            id="volumes-writable-by-the-registry",
        ),
        pytest.param(
            DEFAULT, "spec.template.spec.containers[0].name", "registry", id="registry-container"
        ),
        pytest.param(
            DEFAULT, "spec.template.spec.containers[0].image", "registry:2.8.1", id="default-image"
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.containers[0].env",
            [{"name": "REGISTRY_HTTP_ADDR", "value": ":5000"}],
            id="http-addr",
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.containers[0].readinessProbe.httpGet",
            {"path": "/v2/", "port": 5000},
            id="readiness",
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.containers[0].livenessProbe.httpGet",
            {"path": "/v2/", "port": 5000},
            id="liveness",
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.containers[0].securityContext",
            {
                "runAsUser": 1000,
                "runAsNonRoot": True,
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
            },
            id="registry-security",
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.containers[0].volumeMounts",
            [{"name": "registry", "mountPath": "/var/lib/registry"}],
            id="data-mount",
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.volumes",
            [{"name": "registry", "emptyDir": {}}, {"name": "buildkit", "emptyDir": {}}],
            id="emptydirs",
        ),
        pytest.param(
            DEFAULT, "spec.template.spec.containers[1].name", "buildkitd", id="buildkit-sidecar"
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.containers[1].image",
            "moby/buildkit:master-rootless",
            id="buildkit-image",
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.containers[1].args",
            ["--oci-worker-no-process-sandbox"],
            id="buildkit-args",
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.containers[1].securityContext",
            {"seccompProfile": {"type": "Unconfined"}, "runAsUser": 1000, "runAsGroup": 1000},
            id="buildkit-security",
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.containers[1].volumeMounts",
            [{"name": "buildkit", "mountPath": "/home/user/.local/share/buildkit"}],
            id="buildkit-state",
        ),
        pytest.param(
            DEFAULT,
            "spec.template.spec.containers[1].readinessProbe.exec.command",
            ["buildctl", "debug", "workers"],
            id="buildkit-readiness",
        ),
        pytest.param(
            DEFAULT,
            "spec.template.metadata.annotations",
            {"container.apparmor.security.beta.kubernetes.io/buildkitd": "unconfined"},
            id="apparmor-for-buildkitd-only",
        ),
        pytest.param(
            CUSTOM, "spec.template.spec.containers[0].image", "example.com/registry:3", id="image"
        ),
        pytest.param(
            CUSTOM,
            "spec.template.spec.containers[0].env[0].value",
            ":5123",
            id="custom-port-env",
        ),
        pytest.param(
            CUSTOM,
            "spec.template.spec.containers[0].ports",
            [{"name": "registry", "containerPort": 5123, "protocol": "TCP"}],
            id="custom-port",
        ),
        pytest.param(CUSTOM, "spec.selector.matchLabels", {"app": "reg"}, id="custom-name"),
        pytest.param(
            CUSTOM,
            "spec.template.spec.containers[1].image",
            "example.com/buildkit:1",
            id="custom-buildkit-image",
        ),
        pytest.param(PERSISTENT, "kind", "StatefulSet", id="statefulset-when-persistent"),
        pytest.param(PERSISTENT, "spec.serviceName", "registry", id="sts-service-name"),
        pytest.param(
            PERSISTENT,
            "spec.volumeClaimTemplates[0].metadata.name",
            "registry",
            id="claim-template-name",
        ),
        pytest.param(
            PERSISTENT,
            "spec.volumeClaimTemplates[0].spec",
            {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "7Gi"}}},
            id="claim-size-no-class",
        ),
        pytest.param(
            PERSISTENT_CLASS,
            "spec.volumeClaimTemplates[0].spec.storageClassName",
            "fast",
            id="claim-storage-class",
        ),
        pytest.param(
            PERSISTENT,
            "spec.template.spec.volumes",
            [{"name": "buildkit", "emptyDir": {}}],
            id="sts-data-from-claim-not-emptydir",
        ),
    ],
)
def test_workload_field(registry: LocalRegistry, path: str, expected: Any) -> None:
    assert get(objects.workload_object(registry, "ns1"), path) == expected


@pytest.mark.parametrize(
    "registry",
    [
        pytest.param(LOCALBUILD, id="deployment"),
        pytest.param(replace(PERSISTENT, localbuild=True), id="statefulset"),
    ],
)
def test_localbuild_has_no_buildkit_sidecar(registry: LocalRegistry) -> None:
    template = objects.workload_object(registry, "ns")["spec"]["template"]
    assert [c["name"] for c in template["spec"]["containers"]] == ["registry"]
    assert "annotations" not in template["metadata"]
    assert all(v["name"] != "buildkit" for v in template["spec"].get("volumes", []))


@pytest.mark.parametrize(
    ("registry", "node_port", "expected_port"),
    [
        pytest.param(
            DEFAULT,
            None,
            {"name": "registry", "protocol": "TCP", "port": 5000, "targetPort": 5000},
            id="assigned-by-cluster",
        ),
        pytest.param(
            CUSTOM,
            31234,
            {
                "name": "registry",
                "protocol": "TCP",
                "port": 5123,
                "targetPort": 5123,
                "nodePort": 31234,
            },
            id="kept-across-port-change",
        ),
    ],
)
def test_service(registry: LocalRegistry, node_port: int | None, expected_port: Any) -> None:
    svc = objects.service_object(registry, "ns1", node_port=node_port)
    assert svc["kind"] == "Service"
    assert svc["metadata"]["name"] == registry.name
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["selector"] == {"app": registry.name}
    assert svc["spec"]["ports"] == [expected_port]


def test_namespace_object() -> None:
    assert objects.namespace_object("dev") == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "dev", "labels": {"app.kubernetes.io/managed-by": "devreg"}},
    }


def test_buildkit_named_registry_keeps_volume_names_apart() -> None:
    volumes = objects.workload_object(replace(DEFAULT, name="buildkit"), "ns")["spec"]["template"][
        "spec"
    ]["volumes"]
    assert len({v["name"] for v in volumes}) == 2


@pytest.mark.parametrize(
    ("registry", "message"),
    [
        pytest.param(
            replace(DEFAULT, image="Registry:2"), "localRegistry.image: 'Registry:2'", id="image"
        ),
        pytest.param(
            replace(DEFAULT, buildkit_image="moby//buildkit"),
            "localRegistry.buildKitImage",
            id="buildkit-image",
        ),
        pytest.param(replace(DEFAULT, port=0), "localRegistry.port: 0", id="port"),
        pytest.param(
            replace(DEFAULT, unresolved=("localRegistry.port",)),
            "localRegistry.port: the expression could not be resolved",
            id="unresolved",
        ),
    ],
)
def test_check_registry_settings_refuses(registry: LocalRegistry, message: str) -> None:
    with pytest.raises(FatalError, match=message.replace("(", r"\(").replace(".", r"\.")):
        objects.check_registry_settings(registry)


def test_claim_names() -> None:
    assert objects.claim_names(replace(DEFAULT, name="r"), 2) == ["r-r-0", "r-r-1"]
