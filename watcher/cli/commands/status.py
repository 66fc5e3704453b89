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


def _registry_info(
    config: Path, context: str | None, namespace: str | None, probe: bool, config_dir: Path
) -> dict[str, Any]:
    """The registry as ``status_info`` sees it and, with ``probe`` and when it answers
    here, the pull probe's result (cached in ``config_dir``'s .devreg when devreg can trust it: a
    clean result is reused until the registry, its port or the nodes change); one API
    client for both."""
    from watcher.cluster.kube import Kube
    from watcher.cluster.pullprobe import Target, probe_pulls
    from watcher.cluster.registry import status_info

    try:
        with Kube(context) as kube:
            info = status_info(config=config, context=context, namespace=namespace, kube=kube)
            if probe and info.get("answers") and info.get("host"):
                target = Target(
                    host=info["host"],
                    push_host=info["host"],
                    source="kep-1755" if info.get("kep1755") else "deployed",
                    namespace=info.get("namespace"),
                    name=info.get("name"),
                    kind=info.get("workload_kind"),
                )
                try:
                    cache = trusted_state_dir(config_dir)
                    found = probe_pulls(kube, target, state_dir=cache).as_json()
                except Exception as e:  # the registry half stays; the probe says why not
                    found = {"host": info["host"], "ok": False, "error": str(e), "nodes": []}
                info["pull_probe"] = found
            return info
    except FatalError as e:  # no cluster, an invalid config: the watcher half still counts
        return {"error": str(e)}
    except Exception as e:  # an unreachable API server raises its own types
        return {"error": f"{type(e).__name__}: {e}"}


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
    registry = _registry_info(config, context, namespace, probe, config_dir)
    absent = "pull_probe" not in registry and "error" not in registry
    if absent and running and (found := _saved_probe(saved)) is not None:
        # --no-probe (or a registry that does not answer here): what the running
        # watcher's own probe found, as it wrote it.
        registry = {**registry, "pull_probe": found}
    return StatusResult(watcher=watcher, registry=registry, now=time.time())
