"""``devreg up``: ensure the registry in the cluster, wait until it is Ready
and answers ``GET /v2/`` where devreg will push (``localhost:<nodePort>``,
else through a port-forward), and say where it is. A registry that never
answers before ``--timeout`` is an error (exit 1) naming every address tried
and its last error: "ready" is only printed when a push can work.

A port-forward that ``up`` needed to reach the registry ends with the
command (it only proves the way works); ``devreg watch`` and ``devreg build``
keep their own for as long as they run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from watcher.cluster.registry import (
    RegistryEndpoint,
    ensure_registry,
    load_valid_config,
    stderr_log,
)


def describe(endpoint: RegistryEndpoint) -> list[str]:
    """The text report (also used by the tests and docs)."""
    if endpoint.source == "kep-1755":
        lines = [
            f"registry {endpoint.host} (published by the cluster, KEP-1755; nothing deployed)",
            f"  context    {endpoint.context} ({endpoint.server})",
        ]
        if endpoint.kep1755 and endpoint.kep1755.help:
            lines.append(f"  help       {endpoint.kep1755.help}")
    else:
        lines = [
            f"registry {endpoint.host} is ready",
            f"  context    {endpoint.context} ({endpoint.server})",
            f"  namespace  {endpoint.namespace}",
            f"  name       {endpoint.name}",
            f"  workload   {endpoint.workload_kind}",
            f"  node port  {endpoint.node_port}",
        ]
    if endpoint.reach == "localhost" or endpoint.reach == "kep-1755":
        lines.append(f"  reach      {endpoint.host} answers GET /v2/")
    elif endpoint.reach == "port-forward":
        lines.append(
            f"  reach      through a port-forward {endpoint.push_host} -> the registry pod "
            "(verified; it ends with this command, `devreg watch` keeps its own)"
        )
    return lines


def up(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    fmt: str = "text",
    timeout: float = 120.0,
) -> int:
    cfg = load_valid_config(config)
    if cfg.local_registry.enabled is False:
        stderr_log("note: localRegistry.enabled is false, so no image will use this registry")
    # Raises RegistryUnreachable (exit 1) when GET /v2/ never answers in time.
    endpoint = ensure_registry(
        cfg, context=context, namespace=namespace, timeout=timeout, log=stderr_log
    )
    try:
        if fmt == "json":
            json.dump(endpoint.as_json(), sys.stdout, indent=2, sort_keys=True)
            sys.stdout.write("\n")
        else:
            print("\n".join(describe(endpoint)))
    finally:
        endpoint.close()
    return 0
