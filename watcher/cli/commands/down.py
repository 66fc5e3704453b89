"""``devreg down [--purge]``: delete the registry's Deployment or StatefulSet
and its Service. Volume claims (the images of a persistent registry) stay
unless ``--purge``; the namespace always stays (devreg may not have made it,
and other things may live there)."""

from __future__ import annotations

import re
from pathlib import Path

from watcher.cli.results import DownResult
from watcher.cluster.deploy import remove
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
        claim = re.compile(rf"{re.escape(name)}-{re.escape(name)}-\d+\Z")
        kept = (
            ()
            if purge
            else tuple(
                str(p["metadata"]["name"])
                for p in kube.list("PersistentVolumeClaim", ns)
                if claim.match(str(p["metadata"]["name"]))
            )
        )
        return DownResult(
            context=kube.context,
            server=kube.server,
            namespace=ns,
            name=name,
            removed=tuple(removed),
            kept_claims=kept,
        )
