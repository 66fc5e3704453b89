"""Each result's exit code (README: 0 ok, 1 fixable by you, 2 a file missing
or unreadable, 130 interrupted; ``status``: 1 when the registry or the watcher
cannot be told or is failing)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from hookpkg.report import FileResult
from watcher.build.pipeline import Outcome
from watcher.cli.results import (
    BuildResult,
    CheckResult,
    Result,
    StatusResult,
    StopResult,
    WatcherStatus,
    WatchResult,
)
from watcher.daemon.exec_cmd import ExecResult

WATCHER = WatcherStatus(
    running=False,
    pid=None,
    log_path=Path("/p/.devreg/watch.log"),
    log_written=False,
    images={},
    config_errors=[],
    exec=None,
    updated=None,
)
READY = {"deployed": True, "pod_ready": True}


def running(**changes: Any) -> WatcherStatus:
    return dataclasses.replace(WATCHER, running=True, pid=42, **changes)


RUNNING = running()
OK = Outcome("app", "pushed", "t", "r:t", 1.0)
FAILED = Outcome("web", "failed", None, None, 1.0, "boom")


def ran(returncode: int | None, *, cancelled: bool = False) -> ExecResult:
    return ExecResult("c", ("app",), 0.0, 0.1, returncode, cancelled=cancelled)


@pytest.mark.parametrize(
    ("result", "code"),
    [
        pytest.param(CheckResult((FileResult("a.yaml"),)), 0, id="check-ok"),
        pytest.param(CheckResult((FileResult("a.yaml", "error"),)), 1, id="check-error"),
        pytest.param(
            CheckResult((FileResult("a.yaml", "error"), FileResult("b.yaml", "unreadable"))),
            2,
            id="check-unreadable-wins",
        ),
        pytest.param(StatusResult(RUNNING, READY, 0.0), 0, id="status-ready-and-running"),
        pytest.param(StatusResult(RUNNING, {"error": "no cluster"}, 0.0), 1, id="status-unknown"),
        pytest.param(StatusResult(WATCHER, READY, 0.0), 1, id="status-no-watcher"),
        pytest.param(
            StatusResult(RUNNING, {"deployed": True, "pod_ready": False}, 0.0),
            1,
            id="status-pod-not-ready",
        ),
        pytest.param(
            StatusResult(RUNNING, {"deployed": True, "pod_ready": False, "kep1755": {}}, 0.0),
            1,
            id="status-empty-kep1755-counts-as-none",
        ),
        pytest.param(
            StatusResult(
                RUNNING, {"deployed": True, "pod_ready": False, "kep1755": {"host": "h"}}, 0.0
            ),
            0,
            id="status-kep1755-in-use",
        ),
        pytest.param(
            StatusResult(RUNNING, {"kep1755": {"host": "h"}, "answers": False}, 0.0),
            1,
            id="status-kep1755-does-not-answer",
        ),
        pytest.param(
            StatusResult(RUNNING, {"deployed": False, "paths": {"app": "kind-load"}}, 0.0),
            0,
            id="status-not-deployed-not-needed",
        ),
        pytest.param(
            StatusResult(RUNNING, {"deployed": False, "paths": {"app": "local-registry"}}, 0.0),
            1,
            id="status-not-deployed-but-needed",
        ),
        pytest.param(
            StatusResult(running(images={"app": {"state": "failed"}}), READY, 0.0),
            1,
            id="status-image-failed",
        ),
        pytest.param(
            StatusResult(running(images={"app": {"state": "building"}}), READY, 0.0),
            0,
            id="status-image-building",
        ),
        pytest.param(
            StatusResult(running(config_errors=["devspace.yaml:1:1: error: …"]), READY, 0.0),
            1,
            id="status-config-invalid",
        ),
        pytest.param(
            StatusResult(running(exec={"state": "failed"}), READY, 0.0), 1, id="status-exec-failed"
        ),
        pytest.param(BuildResult((OK,), Path("e")), 0, id="build-ok"),
        pytest.param(BuildResult((OK, FAILED), Path("e")), 1, id="build-failed-image"),
        pytest.param(BuildResult((OK,), Path("e"), ran(0)), 0, id="build-exec-ok"),
        pytest.param(BuildResult((OK,), Path("e"), ran(4)), 1, id="build-exec-failed"),
        pytest.param(
            BuildResult((OK, FAILED), Path("e"), ran(None, cancelled=True)),
            130,
            id="build-exec-sigterm",
        ),
        pytest.param(WatchResult(), 0, id="watch"),
        pytest.param(StopResult("not-running"), 0, id="stop-not-running"),
        pytest.param(StopResult("stopped", 1), 0, id="stop-stopped"),
        pytest.param(StopResult("no-pid"), 1, id="stop-no-pid"),
        pytest.param(StopResult("killed", 1, 15.0), 1, id="stop-killed"),
    ],
)
def test_exit_code(result: Result, code: int) -> None:
    assert result.exit_code == code
