"""KEP-1755: a cluster that already has a local registry says so in the
ConfigMap ``kube-public/local-registry-hosting`` (kind, k3d, minikube and
Tilt's ctlptl write it). Its ``host`` is used instead of deploying one.

The data key ``localRegistryHosting.v1`` holds YAML::

    host: "localhost:5001"                  # where this machine pushes
    hostFromContainerRuntime: "kind-registry:5000"
    hostFromClusterNetwork: "kind-registry:5000"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from watcher.cluster.kube import ApiError, Kube

NAMESPACE = "kube-public"
NAME = "local-registry-hosting"
KEY = "localRegistryHosting.v1"

Log = Callable[[str], None]


@dataclass(frozen=True)
class LocalRegistryHosting:
    host: str
    host_from_container_runtime: str | None = None
    host_from_cluster_network: str | None = None
    help: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class InvalidHosting(ValueError):
    pass


def parse_hosting(data: Mapping[str, Any]) -> LocalRegistryHosting | None:
    """The ConfigMap's ``data``; None when it has no v1 entry. Raises
    :class:`InvalidHosting` when the entry is there but unusable."""
    text = data.get(KEY)
    if text is None:
        return None
    try:
        doc = yaml.safe_load(str(text))
    except yaml.YAMLError as e:
        raise InvalidHosting(f"{KEY} is not YAML: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidHosting(f"{KEY} is not a mapping")
    host = doc.get("host")
    if not isinstance(host, str) or not host.strip():
        raise InvalidHosting(f"{KEY} has no host")

    def optional(key: str) -> str | None:
        value = doc.get(key)
        return str(value) if isinstance(value, str) and value else None

    return LocalRegistryHosting(
        host=host.strip(),
        host_from_container_runtime=optional("hostFromContainerRuntime"),
        host_from_cluster_network=optional("hostFromClusterNetwork"),
        help=optional("help"),
    )


def read_hosting(kube: Kube, *, log: Log) -> LocalRegistryHosting | None:
    """Ask the cluster. A ConfigMap devreg may not read, or one it cannot
    use, counts as none (with a line in the log): it is an offer, not a rule."""
    try:
        cm = kube.get("ConfigMap", NAMESPACE, NAME)
    except ApiError as e:
        if e.status in (401, 403):
            log(
                f"cannot read ConfigMap {NAMESPACE}/{NAME} ({e.status}); "
                "assuming the cluster publishes no local registry (KEP-1755)"
            )
            return None
        raise
    if cm is None:
        return None
    try:
        return parse_hosting(cm.get("data") or {})
    except InvalidHosting as e:
        log(f"ignoring ConfigMap {NAMESPACE}/{NAME}: {e}")
        return None
