"""``devreg up``: ensure the registry in the cluster, wait until it is Ready
and answers ``GET /v2/`` where devreg will push (``localhost:<nodePort>``,
else through a port-forward), and say where it is. A registry that never
answers before ``--timeout`` is an error (exit 1) naming every address tried
and its last error: "ready" is only printed when a push can work.

Then the pull probe (:mod:`watcher.cluster.pullprobe`): every node workloads can land
on pulls a tiny image from the registry's address; a node that cannot is diagnosed
(cause and fix) and makes ``up`` exit 1. ``--no-probe`` skips it.

A port-forward that ``up`` needed to reach the registry ends with the
command (it only proves the way works); ``devreg watch`` and ``devreg build``
keep their own for as long as they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hookpkg.project import project_paths
from watcher.cli.results import UpResult
from watcher.cluster.pullprobe import probe_endpoint
from watcher.cluster.registry import ensure_registry, load_valid_config, stderr_log
from watcher.daemon.state import trusted_state_dir


def up(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    timeout: float = 120.0,
    probe: bool = True,
    profiles: Sequence[str] = (),
    profile_activation: bool = True,
) -> UpResult:
    cfg = load_valid_config(config, profiles=profiles, activation=profile_activation)
    if cfg.local_registry.enabled is False:
        stderr_log("note: localRegistry.enabled is false, so no image will use this registry")
    # Raises RegistryUnreachable (exit 1) when GET /v2/ never answers in time.
    endpoint = ensure_registry(
        cfg, context=context, namespace=namespace, timeout=timeout, log=stderr_log
    )
    state = trusted_state_dir(project_paths(config).directory) if probe else None
    try:
        probed = probe_endpoint(endpoint, state, log=stderr_log) if probe else None
    finally:
        endpoint.close()
    return UpResult(endpoint, probed)
