"""``devreg check [FILES…]``: validate every file, then preview its rewrites.

The pre-commit hook's entry. A bad file never stops the others.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from hookpkg import config as config_mod
from hookpkg.delivery import Cluster, classify_cluster
from hookpkg.errors import FatalError
from hookpkg.nodehost import registry_host
from hookpkg.project import project_paths
from hookpkg.report import FileResult, exit_code, write_json, write_text
from hookpkg.rewrite import make_preview
from hookpkg.validate import validate


def check_file(
    path: Path,
    cluster: Cluster,
    *,
    registry: str,
    preview: bool = True,
    profiles: Sequence[str] | None = None,
    activation: bool = True,
) -> FileResult:
    """``profiles`` None (the hook) checks the file as written; a list (``devreg
    preview``, even empty) applies DevSpace's profiles first (:mod:`hookpkg.profiles`)."""
    display = str(path)
    result = FileResult(display)
    try:
        loaded = config_mod.load(path, display=display, profiles=profiles, activation=activation)
    except FatalError as e:
        return FileResult(display, "unreadable", message=str(e).removeprefix(f"{display}: "))
    result.diagnostics = list(loaded.diagnostics)
    if loaded.main is None:
        result.status = "error"
        return result
    if loaded.old_version is not None:
        result.status = "not-applicable"
        result.message = (
            f"version {loaded.old_version} predates v2beta1 (DevSpace 6), which "
            "introduced localRegistry; nothing to check"
        )
        return result
    result.diagnostics += validate(loaded)
    result.diagnostics.sort(key=lambda d: (d.file != display, d.file, d.line, d.col))
    if result.errors:
        result.status = "error"
        return result
    if preview:
        cfg = config_mod.build_config(loaded, directory=project_paths(loaded.main.path).directory)
        result.preview = make_preview(loaded, cfg, cluster, registry_host=registry)
    return result


def check(
    *,
    files: Sequence[Path] = (),
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    fmt: str = "text",
    node_port: int | None = None,
) -> int:
    del namespace  # the preview needs no namespace; accepted as a common flag
    cluster = classify_cluster(context)
    registry = registry_host(node_port)
    results = [check_file(p, cluster, registry=registry) for p in (files or [config])]
    if fmt == "json":
        write_json(results, sys.stdout)
    else:
        write_text(results, sys.stdout)
    return exit_code(results)
