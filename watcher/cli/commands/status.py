"""``devreg status``: the registry (``watcher.cluster.registry.status_info``) and
the watcher, per image: state, tag, last build, last error."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hookpkg.errors import FatalError
from hookpkg.project import project_paths
from watcher.cli.results import StatusResult, WatcherStatus
from watcher.daemon.state import StateDir, trusted_state_dir


def _registry_info(config: Path, context: str | None, namespace: str | None) -> dict[str, Any]:
    from watcher.cluster.registry import status_info

    try:
        return status_info(config=config, context=context, namespace=namespace)
    except FatalError as e:  # no cluster, an invalid config: the watcher half still counts
        return {"error": str(e)}
    except Exception as e:  # an unreachable API server raises its own types
        return {"error": f"{type(e).__name__}: {e}"}


def _probe(registry: dict[str, Any], state_dir: Path | None, context: str | None) -> dict[str, Any]:
    """The pull probe for the registry status found answering (cached: a clean
    result is reused until the registry, its port or the nodes change)."""
    from watcher.cluster.kube import Kube
    from watcher.cluster.pullprobe import Target, probe_pulls

    target = Target(
        host=registry["host"],
        push_host=registry["host"],
        source="kep-1755" if registry.get("kep1755") else "deployed",
        namespace=registry.get("namespace"),
        name=registry.get("name"),
        kind=registry.get("workload_kind"),
    )
    try:
        with Kube(context) as kube:
            return probe_pulls(kube, target, state_dir=state_dir).as_json()
    except FatalError as e:
        return {"host": registry["host"], "ok": False, "error": str(e), "nodes": []}


_PROBE_NODE_FIELDS = ("node", "state", "message", "cause", "says", "fix")


def _saved_probe(saved: dict[str, Any]) -> dict[str, Any] | None:
    """The watcher's probe result from its status file, in the shape it writes, else
    None: a planted or edited file is not trusted (as ``_images`` does)."""
    probe = saved.get("pull_probe")
    if not isinstance(probe, dict) or not isinstance(probe.get("nodes"), list):
        return None
    nodes = []
    for node in probe["nodes"]:
        if not isinstance(node, dict) or not isinstance(node.get("node"), str):
            return None
        fields = {k: node[k] for k in _PROBE_NODE_FIELDS if isinstance(node.get(k), str)}
        snippets = [x for x in _list(node.get("snippets")) if isinstance(x, str)]
        nodes.append({**dict.fromkeys(_PROBE_NODE_FIELDS), **fields, "snippets": snippets})
    kept = {k: probe[k] for k in ("host", "state", "error") if isinstance(probe.get(k), str)}
    cached = probe.get("cached") is True
    seconds = probe.get("seconds") if isinstance(probe.get("seconds"), int | float) else 0
    return {"host": "?", **kept, "nodes": nodes, "cached": cached, "seconds": seconds,
            "from_watcher": True}  # fmt: skip


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _images(value: Any) -> dict[str, dict[str, Any]]:
    """The status file's images, as the watcher writes them; anything of another
    shape (an edited or planted file) is left out, never trusted."""
    if not isinstance(value, dict):
        return {}
    images = {}
    for key, image in value.items():
        if isinstance(image, dict):
            image = dict(image)
            if not isinstance(image.get("last_error_tail"), list):
                image.pop("last_error_tail", None)
            images[str(key)] = image
    return images


def status(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    probe: bool = True,
) -> StatusResult:
    config_dir = project_paths(config).directory
    state = StateDir(config_dir)
    running = state.watcher_running()
    saved = state.read_status() or {}
    watcher = WatcherStatus(
        running=running,
        pid=state.read_pid() if running else None,
        log_path=state.log_path,
        log_written=state.log_path.exists(),
        images=_images(saved.get("images")),
        config_errors=[str(e) for e in _list(saved.get("config_errors"))],
        exec=saved.get("exec") if isinstance(saved.get("exec"), dict) else None,
        updated=saved.get("updated") if isinstance(saved.get("updated"), int | float) else None,
    )
    registry = _registry_info(config, context, namespace)
    if probe and registry.get("answers") and registry.get("host"):
        registry = {
            **registry,
            "pull_probe": _probe(registry, trusted_state_dir(config_dir), context),
        }
    elif running and "error" not in registry and (found := _saved_probe(saved)) is not None:
        # --no-probe (or a registry that does not answer here): what the running
        # watcher's own probe found, as it wrote it.
        registry = {**registry, "pull_probe": found}
    return StatusResult(watcher=watcher, registry=registry, now=time.time())
