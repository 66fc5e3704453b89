"""``devreg down [--purge]``: delete the registry's Deployment or StatefulSet
and its Service. Volume claims (the images of a persistent registry) stay
unless ``--purge``; the namespace always stays (devreg may not have made it,
and other things may live there)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from watcher.cluster.deploy import remove
from watcher.cluster.kube import Kube
from watcher.cluster.registry import load_valid_config, registry_namespace


def down(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    fmt: str = "text",
    purge: bool = False,
) -> int:
    cfg = load_valid_config(config)
    name = cfg.local_registry.name
    with Kube(context) as kube:
        ns = registry_namespace(cfg, namespace, kube)
        removed = remove(kube, ns, name, purge=purge)
        claim = re.compile(rf"{re.escape(name)}-{re.escape(name)}-\d+\Z")
        kept = (
            []
            if purge
            else [
                str(p["metadata"]["name"])
                for p in kube.list("PersistentVolumeClaim", ns)
                if claim.match(str(p["metadata"]["name"]))
            ]
        )
        doc: dict[str, Any] = {
            "context": kube.context,
            "server": kube.server,
            "namespace": ns,
            "name": name,
            "removed": removed,
            "kept_claims": kept,
        }
    if fmt == "json":
        json.dump(doc, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    where = f"namespace {ns} (context {doc['context']})"
    if removed:
        print(f"removed from {where}: {', '.join(removed)}")
    else:
        print(f"nothing to remove: no registry {name!r} in {where}")
    if kept:
        print(f"kept volume claims: {', '.join(kept)} (`devreg down --purge` deletes them)")
    return 0
