"""What each command found or did: one record per command, returned to
:func:`watcher.cli.main.main`, which hands it to :mod:`watcher.cli.report`
(text or JSON) and exits with its ``exit_code``.

Pure and light: the domain records some of them carry (a registry endpoint, a
build's outcome, an ``--exec`` run) are imported for type checking only, so
that ``devreg check`` (the pre-commit hook) loads none of the runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from watcher.cli.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USER

if TYPE_CHECKING:
    from hookpkg.report import FileResult
    from watcher.build.pipeline import Outcome
    from watcher.cluster.pullprobe import ProbeResult
    from watcher.cluster.registry import RegistryEndpoint
    from watcher.daemon.exec_cmd import ExecResult


@dataclass(frozen=True)
class CheckResult:
    """``devreg check`` and ``devreg preview``: one result per file."""

    files: tuple[FileResult, ...]

    @property
    def exit_code(self) -> int:
        from hookpkg.report import exit_code  # only check/preview pay for the hook's reporter

        return exit_code(list(self.files))


@dataclass(frozen=True)
class UpResult:
    """``devreg up``: the registry, ready and answering where devreg pushes.
    Closed: a port-forward it needed ended with the command."""

    endpoint: RegistryEndpoint
    probe: ProbeResult | None = None  # None: not run (--no-probe, or nothing to reach)

    @property
    def exit_code(self) -> int:
        # A node that cannot pull is the user's to fix (the diagnosis says how); a
        # probe that could not run at all (no pods allowed) is only reported.
        failed = self.probe is not None and self.probe.error is None and not self.probe.ok
        return EXIT_USER if failed else EXIT_OK


@dataclass(frozen=True)
class DownResult:
    """``devreg down``: what was deleted, and the volume claims kept."""

    context: str
    server: str
    namespace: str
    name: str
    removed: tuple[str, ...]  # "Deployment/registry", …
    kept_claims: tuple[str, ...]  # () with --purge

    @property
    def exit_code(self) -> int:
        return EXIT_OK


@dataclass(frozen=True)
class WatcherStatus:
    """The watcher half of ``devreg status``, as its status file left it
    (``images``, ``config_errors``, ``exec`` and ``updated`` are that file's
    values, shown as they are)."""

    running: bool
    pid: int | None  # when running
    log_path: Path
    log_written: bool  # whether log_path exists
    images: Mapping[str, Mapping[str, Any]]
    config_errors: Sequence[str]
    exec: Any  # the --exec command's state (a mapping), or None
    updated: Any  # time.time() of the last write, or None


@dataclass(frozen=True)
class StatusResult:
    """``devreg status``: the registry (``status_info``, or ``{"error": …}``
    when it cannot be told) and the watcher."""

    watcher: WatcherStatus
    registry: Mapping[str, Any]
    now: float  # time.time() when it was read: the "… s ago" in the text

    @property
    def exit_code(self) -> int:
        return EXIT_USER if self.problems() else EXIT_OK

    def problems(self) -> list[str]:
        """Why ``devreg status`` exits 1: each half that cannot be told or is
        failing (README, exit codes). Empty: the registry is usable (or no image
        needs it) and the watcher is running with nothing failed."""
        return [*registry_problems(self.registry), *watcher_problems(self.watcher)]


def registry_problems(reg: Mapping[str, Any]) -> list[str]:
    if "error" in reg:
        return [f"registry: cannot tell ({reg['error']})"]
    if reg.get("kep1755"):  # the cluster's own registry: nothing of devreg's to be Ready
        if not reg.get("answers", True):
            return ["registry: the KEP-1755 registry does not answer"]
        return probe_problems(reg.get("pull_probe"))
    if not reg.get("deployed"):
        needed = [k for k, w in (reg.get("paths") or {}).items() if w == "local-registry"]
        return (
            [f"registry: not deployed; images {', '.join(sorted(needed))} need it"]
            if needed
            else []
        )
    # Deployed (and used) but its pod is not Ready: pushes fail; its lines
    # ("pod_problems") say what the kubelet reported.
    if not reg.get("pod_ready"):
        return ["registry: its pod is not Ready"]
    return probe_problems(reg.get("pull_probe"))


def probe_problems(probe: Any) -> list[str]:
    """Nodes that cannot pull from the registry (the pull probe); a probe that
    could not run is shown, not counted."""
    if not isinstance(probe, Mapping) or probe.get("error"):
        return []
    failing = [
        str(n.get("node"))
        for n in probe.get("nodes") or []
        if isinstance(n, Mapping) and n.get("state") in ("failed", "timeout")
    ]
    return [f"registry: node(s) {', '.join(failing)} cannot pull from it"] if failing else []


def watcher_problems(w: WatcherStatus) -> list[str]:
    if not w.running:
        return ["watcher: not running"]
    problems = [
        f"watcher: image {k} failed"
        for k, i in sorted(w.images.items())
        if i.get("state") == "failed"
    ]
    if w.config_errors:
        problems.append("watcher: the configuration is invalid")
    if isinstance(w.exec, Mapping) and w.exec.get("state") == "failed":
        problems.append("watcher: the last --exec run failed")
    return problems


@dataclass(frozen=True)
class BuildResult:
    """``devreg build``: each image's outcome, the variables file written, and
    the ``--exec`` run (None when CMD was not given or not run)."""

    images: tuple[Outcome, ...]
    env_file: Path
    exec_result: ExecResult | None = None

    @property
    def exit_code(self) -> int:
        ran = self.exec_result
        if ran is not None and ran.cancelled:
            return EXIT_INTERRUPTED  # SIGTERM while CMD ran
        failed = any(o.state == "failed" for o in self.images) or (ran is not None and not ran.ok)
        return EXIT_USER if failed else EXIT_OK


@dataclass(frozen=True)
class WatchResult:
    """``devreg watch``: with ``--detach``, the background watcher now running
    (``pid``, ``log``); without, nothing (the watcher ran here until stopped)."""

    pid: int | None = None
    log: Path | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_OK


StopOutcome = Literal["not-running", "no-pid", "stopped", "killed"]


@dataclass(frozen=True)
class StopResult:
    """``devreg stop``: whether there was a watcher, and how it ended
    (``killed``: it did not stop within ``timeout`` seconds of SIGTERM)."""

    outcome: StopOutcome
    pid: int | None = None
    timeout: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_USER if self.outcome in ("no-pid", "killed") else EXIT_OK


@dataclass(frozen=True)
class EnvResult:
    """``devreg env``: the variables of ``.devreg.env`` (or one image's)."""

    variables: Mapping[str, str]

    @property
    def exit_code(self) -> int:
        return EXIT_OK


Result = (
    CheckResult
    | UpResult
    | DownResult
    | StatusResult
    | BuildResult
    | WatchResult
    | StopResult
    | EnvResult
)
