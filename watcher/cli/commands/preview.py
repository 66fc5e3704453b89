"""``devreg preview``: the rewrite preview alone.

Offline by default (``localhost:[NODE_PORT]``); ``--node-port N`` substitutes
a number; ``--cluster`` asks the cluster for the registry Service's node port
and a KEP-1755 registry. Only the ``--cluster`` path imports the kubernetes
client.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hookpkg.commands.check import check_file, registry_host
from hookpkg.delivery import classify_cluster
from hookpkg.report import exit_code, write_json, write_text


def preview(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    fmt: str = "text",
    node_port: int | None = None,
    cluster: bool = False,
) -> int:
    kind = classify_cluster(context)
    registry = registry_host(node_port)
    if cluster:
        from watcher.cluster.preview import registry_from_cluster

        registry = registry_from_cluster(config=config, context=context, namespace=namespace)
    result = check_file(config, kind, registry=registry)
    if fmt == "json":
        write_json([result], sys.stdout)
    else:
        write_text([result], sys.stdout)
    return exit_code([result])
