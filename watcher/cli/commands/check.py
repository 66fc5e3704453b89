"""``devreg check [FILES…]``: validate every file, then preview its rewrites
(:func:`hookpkg.commands.check.check_file`). The pre-commit hook's entry: a bad
file never stops the others, and nothing of the runtime is imported."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hookpkg.commands.check import check_file
from hookpkg.delivery import classify_cluster
from hookpkg.nodehost import registry_host
from watcher.cli.results import CheckResult


def check(
    *,
    files: Sequence[Path] = (),
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    node_port: int | None = None,
) -> CheckResult:
    cluster = classify_cluster(context)
    registry = registry_host(node_port)
    return CheckResult(tuple(check_file(p, cluster, registry=registry) for p in files or [config]))
