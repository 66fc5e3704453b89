"""The objects of SPEC §3, as plain dicts ready for server-side apply.

Pure functions of the ``localRegistry`` settings and the namespace: no API
call, no I/O, so every field can be checked by a table test and the deploy
module (:mod:`watcher.cluster.deploy`) only sends what these return.

Every field devreg cares about is written out, even where it equals the API
default: with server-side apply the fields in the applied object are the
ones devreg owns, so a later config change (or a ``kubectl edit`` of one of
them) is put right by the next ``devreg up``.
"""

from __future__ import annotations

from typing import Any, Literal

from hookpkg.config import LocalRegistry
from hookpkg.errors import FatalError
from hookpkg.reference import InvalidReference, parse_reference

WorkloadKind = Literal["Deployment", "StatefulSet"]
MANAGED_BY = {"app.kubernetes.io/managed-by": "devreg"}
DATA_PATH = "/var/lib/registry"
BUILDKIT_STATE = "/home/user/.local/share/buildkit"
UID = 1000

Obj = dict[str, Any]


def workload_kind(registry: LocalRegistry) -> WorkloadKind:
    return "StatefulSet" if registry.persistence.enabled else "Deployment"


def other_workload_kind(registry: LocalRegistry) -> WorkloadKind:
    return "Deployment" if registry.persistence.enabled else "StatefulSet"


def check_registry_settings(registry: LocalRegistry) -> None:
    """Refuse settings that would reach the API server broken (``devreg check``
    already reports them; this guards callers that built a LocalRegistry by
    hand or kept an unresolved ``${VAR}``)."""
    if registry.unresolved:
        fields = ", ".join(registry.unresolved)
        raise FatalError(
            f"{fields}: the expression could not be resolved, so devreg does not know what to "
            "deploy; define the variable (in `vars` or the environment) or write the value"
        )
    for field_name, value in (
        ("localRegistry.image", registry.image),
        ("localRegistry.buildKitImage", registry.buildkit_image),
    ):
        try:
            parse_reference(value)
        except InvalidReference as e:
            raise FatalError(f"{field_name}: {value!r} is not an image reference: {e}") from None
    if not 1 <= registry.port <= 65535:
        raise FatalError(f"localRegistry.port: {registry.port} is not a port (1-65535)")


def selector(registry: LocalRegistry) -> dict[str, str]:
    return {"app": registry.name}


def _metadata(registry: LocalRegistry, namespace: str) -> Obj:
    return {
        "name": registry.name,
        "namespace": namespace,
        "labels": {**selector(registry), **MANAGED_BY},
    }


def namespace_object(namespace: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": dict(MANAGED_BY)},
    }


def _buildkit_volume(registry: LocalRegistry) -> str:
    # Volume names share one namespace with the data volume, named after the registry.
    return "buildkit" if registry.name != "buildkit" else "buildkit-state"


def registry_container(registry: LocalRegistry) -> Obj:
    probe = {"httpGet": {"path": "/v2/", "port": registry.port}}
    return {
        "name": "registry",
        "image": registry.image,
        # The distribution registry honours it; it is how `port` reaches the process.
        "env": [{"name": "REGISTRY_HTTP_ADDR", "value": f":{registry.port}"}],
        "ports": [{"name": "registry", "containerPort": registry.port, "protocol": "TCP"}],
        "readinessProbe": {**probe, "periodSeconds": 2},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
        "securityContext": {
            "runAsUser": UID,
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        },
        "volumeMounts": [{"name": registry.name, "mountPath": DATA_PATH}],
    }


def buildkit_container(registry: LocalRegistry) -> Obj:
    """Rootless BuildKit, nothing privileged and no capability added. Each field was
    checked on a real node by taking it away (docs/buildkit.md, "The buildkitd
    container on a real node")."""
    return {
        "name": "buildkitd",
        "image": registry.buildkit_image,
        # A RUN step in a PID namespace of its own needs a fresh /proc, which the
        # kernel refuses inside the user namespace while the container's /proc has
        # masked paths: without the flag every RUN step fails to mount proc.
        "args": ["--oci-worker-no-process-sandbox"],
        "readinessProbe": {
            "exec": {"command": ["buildctl", "debug", "workers"]},
            "periodSeconds": 5,
        },
        # rootlesskit makes a user namespace and buildkitd mounts in it: the default
        # seccomp profile forbids both. Privilege escalation and the default
        # capabilities stay: newuidmap/newgidmap need their setuid bit or file
        # capabilities to write the id maps (allowPrivilegeEscalation: false, or
        # dropping ALL, stops rootlesskit at once).
        "securityContext": {
            "seccompProfile": {"type": "Unconfined"},
            "runAsUser": UID,
            "runAsGroup": UID,
        },
        "volumeMounts": [{"name": _buildkit_volume(registry), "mountPath": BUILDKIT_STATE}],
    }


def pod_template(registry: LocalRegistry) -> Obj:
    containers = [registry_container(registry)]
    volumes: list[Obj] = []
    annotations: dict[str, str] = {}
    if not registry.persistence.enabled:
        volumes.append({"name": registry.name, "emptyDir": {}})
    if not registry.localbuild:
        containers.append(buildkit_container(registry))
        volumes.append({"name": _buildkit_volume(registry), "emptyDir": {}})
        # Rootless BuildKit needs mount syscalls the default AppArmor profile
        # denies; the annotation unconfines that container only.
        annotations["container.apparmor.security.beta.kubernetes.io/buildkitd"] = "unconfined"
    metadata: Obj = {"labels": selector(registry)}
    if annotations:
        metadata["annotations"] = annotations
    spec: Obj = {
        "enableServiceLinks": False,
        # The volumes belong to the registry's group (uid/gid 1000): a fresh cloud disk
        # behind the PVC is root's and the registry could not write its first push
        # (seen on the test nodes' root-owned hostPath volumes). OnRootMismatch: the
        # kubelet chowns a large registry only once, not at every mount.
        "securityContext": {"fsGroup": UID, "fsGroupChangePolicy": "OnRootMismatch"},
        "containers": containers,
    }
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": metadata, "spec": spec}


def deployment_object(registry: LocalRegistry, namespace: str) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(registry, namespace),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(registry)},
            # Never two registry pods at once: pushes through the node port
            # would land on either and one of them is about to go away.
            "strategy": {"type": "Recreate"},
            "template": pod_template(registry),
        },
    }


def statefulset_object(registry: LocalRegistry, namespace: str) -> Obj:
    persistence = registry.persistence
    claim_spec: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": persistence.size}},
    }
    if persistence.storage_class_name:
        claim_spec["storageClassName"] = persistence.storage_class_name
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(registry, namespace),
        "spec": {
            "replicas": 1,
            "serviceName": registry.name,
            "selector": {"matchLabels": selector(registry)},
            "template": pod_template(registry),
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": registry.name, "labels": selector(registry)},
                    "spec": claim_spec,
                }
            ],
        },
    }


def workload_object(registry: LocalRegistry, namespace: str) -> Obj:
    if registry.persistence.enabled:
        return statefulset_object(registry, namespace)
    return deployment_object(registry, namespace)


def service_object(registry: LocalRegistry, namespace: str, *, node_port: int | None = None) -> Obj:
    """``node_port``: keep the one the cluster assigned before (a changed
    ``port`` would otherwise get a new one, and every image URL with it)."""
    port: Obj = {
        "name": "registry",
        "protocol": "TCP",
        "port": registry.port,
        "targetPort": registry.port,
    }
    if node_port is not None:
        port["nodePort"] = node_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(registry, namespace),
        "spec": {"type": "NodePort", "selector": selector(registry), "ports": [port]},
    }


def claim_names(registry: LocalRegistry, ordinals: int = 1) -> list[str]:
    """The PVCs the StatefulSet creates: ``<template>-<statefulset>-<ordinal>``."""
    return [f"{registry.name}-{registry.name}-{i}" for i in range(ordinals)]
