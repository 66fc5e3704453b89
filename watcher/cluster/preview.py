"""``devreg preview --cluster``: the registry host the preview substitutes,
asked from the cluster (SPEC §4): the KEP-1755 registry when the cluster
publishes one, else ``localhost:<nodePort>`` of the deployed registry's
Service, else the ``localhost:[NODE_PORT]`` placeholder with a note.

Works on a config with errors too (the preview still shows them), with the
``localRegistry`` defaults standing in for broken fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hookpkg.config import build_local_registry, load
from hookpkg.nodehost import registry_host
from hookpkg.plan import registry_namespace
from watcher.cluster.deploy import service_node_port
from watcher.cluster.kep1755 import read_hosting
from watcher.cluster.kube import Kube
from watcher.cluster.registry import stderr_log


def registry_from_cluster(
    *,
    config: Path,
    context: str | None,
    namespace: str | None,
    profiles: Sequence[str] = (),
    activation: bool = True,
) -> str:
    registry = build_local_registry(load(config, profiles=profiles, activation=activation))
    with Kube(context) as kube:
        hosting = read_hosting(kube, log=stderr_log)
        if hosting is not None:
            return hosting.host
        ns = registry_namespace(namespace, registry, kube.namespace)
        service = kube.get("Service", ns, registry.name)
    node_port = service_node_port(service) if service is not None else None
    if node_port is None:
        stderr_log(
            f"note: no registry Service {ns}/{registry.name} in context {kube.context!r} yet "
            "(`devreg up` deploys it); previewing with the placeholder"
        )
    return registry_host(node_port)
