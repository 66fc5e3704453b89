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

from pathlib import Path

from watcher.cli.results import UpResult
from watcher.cluster.registry import ensure_registry, load_valid_config, stderr_log


def up(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    timeout: float = 120.0,
) -> UpResult:
    cfg = load_valid_config(config)
    if cfg.local_registry.enabled is False:
        stderr_log("note: localRegistry.enabled is false, so no image will use this registry")
    # Raises RegistryUnreachable (exit 1) when GET /v2/ never answers in time.
    endpoint = ensure_registry(
        cfg, context=context, namespace=namespace, timeout=timeout, log=stderr_log
    )
    endpoint.close()
    return UpResult(endpoint)
