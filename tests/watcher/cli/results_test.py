"""Each result's exit code (README: 0 ok, 1 fixable by you, 2 a file missing
or unreadable, 130 interrupted)."""

from __future__ import annotations

from pathlib import Path

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
        pytest.param(StatusResult(WATCHER, {"error": "no cluster"}, 0.0), 0, id="status-unknown"),
        pytest.param(
            StatusResult(WATCHER, {"deployed": True, "pod_ready": True}, 0.0), 0, id="status-ready"
        ),
        pytest.param(
            StatusResult(WATCHER, {"deployed": True, "pod_ready": False}, 0.0),
            1,
            id="status-pod-not-ready",
        ),
        pytest.param(
            StatusResult(WATCHER, {"deployed": True, "pod_ready": False, "kep1755": {}}, 0.0),
            1,
            id="status-empty-kep1755-counts-as-none",
        ),
        pytest.param(
            StatusResult(
                WATCHER, {"deployed": True, "pod_ready": False, "kep1755": {"host": "h"}}, 0.0
            ),
            0,
            id="status-kep1755-in-use",
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
