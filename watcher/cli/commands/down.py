"""``devreg down [--purge]``: delete the registry's Deployment or StatefulSet
and its Service. Volume claims (the images of a persistent registry) stay
unless ``--purge``; the namespace always stays (devreg may not have made it,
and other things may live there)."""

from __future__ import annotations

from pathlib import Path

from watcher.cli.results import DownResult
from watcher.cluster.deploy import registry_claims, remove
from watcher.cluster.kube import Kube
from watcher.cluster.registry import load_valid_config, registry_namespace


def down(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    purge: bool = False,
) -> DownResult:
    cfg = load_valid_config(config)
    name = cfg.local_registry.name
    with Kube(context) as kube:
        ns = registry_namespace(cfg, namespace, kube)
        removed = remove(kube, ns, name, purge=purge)
        kept = () if purge else tuple(registry_claims(kube, ns, name))
        return DownResult(
            context=kube.context,
            server=kube.server,
            namespace=ns,
            name=name,
            removed=tuple(removed),
            kept_claims=kept,
        )
