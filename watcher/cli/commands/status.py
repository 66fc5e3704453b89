"""``devreg status``: the registry (``watcher.cluster.registry.status_info``) and
the watcher, per image: state, tag, last build, last error."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from hookpkg.errors import FatalError
from hookpkg.project import project_paths
from watcher.daemon.state import StateDir


def _registry_info(
    config: Path, context: str | None, namespace: str | None
) -> dict[str, Any] | None:
    from watcher.cluster.registry import status_info

    try:
        return status_info(config=config, context=context, namespace=namespace)
    except FatalError as e:  # no cluster, an invalid config: the watcher half still counts
        return {"error": str(e)}
    except Exception as e:  # an unreachable API server raises its own types
        return {"error": f"{type(e).__name__}: {e}"}


def status(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    fmt: str = "text",
) -> int:
    state = StateDir(project_paths(config).directory)
    running = state.watcher_running()
    saved = state.read_status() or {}
    watcher: dict[str, Any] = {
        "running": running,
        "pid": state.read_pid() if running else None,
        "log": str(state.log_path) if state.log_path.exists() else None,
        "images": saved.get("images", {}),
        "config_errors": saved.get("config_errors", []),
        "exec": saved.get("exec"),
        "updated": saved.get("updated"),
    }
    doc = {"watcher": watcher, "registry": _registry_info(config, context, namespace)}
    # Exit 1 when devreg's registry is deployed (and used) but its pod is not Ready:
    # pushes fail, and the lines ("pod_problems") say what its kubelet reported.
    reg = doc["registry"] or {}
    rc = 1 if reg.get("deployed") and not reg.get("kep1755") and not reg.get("pod_ready") else 0
    if fmt == "json":
        json.dump(doc, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return rc
    registry = doc["registry"]
    if registry is not None and "error" in registry:
        print(f"registry: cannot tell ({registry['error']})")
    elif registry is not None:
        from watcher.cluster.registry import format_status

        for line in format_status(registry):
            print(line)
    if running:
        print(f"watcher: running (pid {watcher['pid']}), log {state.log_path}")
    else:
        print("watcher: not running" + (" (last state below)" if watcher["images"] else ""))
    if watcher["config_errors"]:
        print("  the configuration is invalid; the watcher keeps the last good one:")
        for line in watcher["config_errors"]:
            print(f"    {line}")
    for key, info in sorted(watcher["images"].items()):
        seconds = info.get("last_build_seconds")
        took = f"{seconds:.2f} s" if isinstance(seconds, (int, float)) else "-"
        print(
            f"  {key}: {info.get('state')}  tag {info.get('tag') or '-'}  last {took}  "
            f"path {info.get('path') or '-'}"
        )
        if info.get("last_error"):
            print(f"    error: {info['last_error']}")
            for line in info.get("last_error_tail", [])[-10:]:
                print(f"      {line}")
    if isinstance(watcher["exec"], dict):
        for line in format_exec(watcher["exec"], now=time.time()):
            print(f"  {line}")
    if isinstance(saved.get("updated"), (int, float)):
        print(f"  (status written {time.time() - saved['updated']:.0f} s ago)")
    return rc


def format_exec(info: dict[str, Any], *, now: float) -> list[str]:
    """The ``--exec`` command: its state and last run, then that run's last
    lines when it failed::

        exec `helm upgrade …`: FAILED, exited 3 after 0.05 s, 2 s ago (images app); 2 runs, 1 failed
            Error: UPGRADE FAILED: …
    """
    last = info.get("last")
    runs = f"{info.get('runs', 0)} run(s), {info.get('failures', 0)} failed"
    if info.get("state") == "running":
        since = info.get("running_since") or now
        words = f"running for {now - since:.0f} s"
        if last:
            words += f" (previous run: {last['outcome']})"
    elif not last:
        words = "not run yet"
    else:
        state = {"ok": "ok", "failed": "FAILED"}.get(str(info.get("state")), "stopped")
        ago = now - last["started"] - last["seconds"]
        images = " ".join(last.get("images") or []) or "-"
        words = (
            f"{state}, {last['outcome']} after {last['seconds']:.2f} s, {ago:.0f} s ago "
            f"(images {images}); {runs}"
        )
    if info.get("pending"):
        words += "; a newer delivery waits for it"
    lines = [f"exec `{info.get('command')}`: {words}"]
    if last and not last.get("ok") and info.get("state") != "running":
        lines += [f"    {line}" for line in (last.get("tail") or [])[-10:]]
    return lines
