"""``devreg preview``: the rewrite preview alone.

Offline by default (``localhost:[NODE_PORT]``); ``--node-port N`` substitutes
a number; ``--cluster`` asks the cluster for the registry Service's node port
and a KEP-1755 registry. Only the ``--cluster`` path imports the kubernetes
client.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hookpkg.commands.check import check_file
from hookpkg.delivery import classify_cluster
from hookpkg.nodehost import registry_host
from watcher.cli.results import CheckResult


def preview(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    node_port: int | None = None,
    cluster: bool = False,
    profiles: Sequence[str] = (),
    profile_activation: bool = True,
) -> CheckResult:
    kind = classify_cluster(context)
    registry = registry_host(node_port)
    if cluster:
        from watcher.cluster.preview import registry_from_cluster

        registry = registry_from_cluster(
            config=config,
            context=context,
            namespace=namespace,
            profiles=profiles,
            activation=profile_activation,
        )
    # Unlike the hook's check, the preview shows what build and watch will do:
    # with the profiles (-p, and those activation turns on) applied.
    return CheckResult(
        (
            check_file(
                config,
                kind,
                registry=registry,
                profiles=profiles,
                activation=profile_activation,
            ),
        )
    )
