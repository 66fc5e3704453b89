"""``devreg watch [--detach] [--exec CMD]``: rebuild and deliver images when
their sources change (SPEC §7). ``--detach`` starts the same command in the
background with its log in ``.devreg/watch.log`` and returns once it is
watching. ``--exec CMD`` runs CMD after each round of deliveries
(:mod:`watcher.daemon.exec_cmd`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from hookpkg.config import Config
from hookpkg.errors import FatalError
from hookpkg.project import ENV_FILE, project_paths
from watcher import console
from watcher.build.contenttag import DigestCache
from watcher.cli.results import WatchResult
from watcher.daemon.exec_cmd import ExecCommand, check_exec
from watcher.daemon.session import Profiles, Session, read_config, require_config
from watcher.daemon.state import StateDir
from watcher.daemon.watch import Watcher
from watcher.safefile import append_private, read_tail

DETACH_GRACE = 30.0  # beyond --timeout, for the first scan


def _log(line: str) -> None:
    now = time.time()
    # Milliseconds: a rebuild takes well under a second, and its steps are
    # read from this log.
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    print(f"{stamp} {line}", file=sys.stderr, flush=True)


def watch(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    detach: bool = False,
    debounce: float = 0.05,
    jobs: int | None = None,
    timeout: float = 120.0,
    exec_command: str | None = None,
    profiles: Sequence[str] = (),
    profile_activation: bool = True,
) -> WatchResult:
    if jobs is not None and jobs < 1:
        raise FatalError("--jobs must be at least 1", exit_code=2)
    check_exec(exec_command)
    chosen = Profiles(tuple(profiles), profile_activation)  # kept for every reload
    if detach:
        return _detach(config, context, namespace, debounce, jobs, timeout, exec_command, chosen)
    cfg = require_config(config, log=_log, profiles=chosen)
    state = StateDir(cfg.directory)
    state.acquire()
    session = Session(
        context=context, namespace=namespace, timeout=timeout, log=_log, probe_dir=state.root
    )
    runner = (
        ExecCommand(
            exec_command, directory=cfg.directory, env_file=cfg.directory / ENV_FILE, log=_log
        )
        if exec_command
        else None
    )
    try:
        _run_until_stopped(
            cfg, state, session, debounce=debounce, jobs=jobs, runner=runner, profiles=chosen
        )
        return WatchResult()
    finally:
        session.close()
        state.release()


def _run_until_stopped(
    cfg: Config,
    state: StateDir,
    session: Session,
    *,
    debounce: float,
    jobs: int | None,
    runner: ExecCommand | None,
    profiles: Profiles,
) -> None:
    """Watch in this thread until SIGINT or SIGTERM stops the watcher (before
    it exists, the signal interrupts as ^C would)."""
    watcher: Watcher | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _log(f"{signal.Signals(signum).name}: stopping")
        if watcher is not None:
            watcher.stop()
        else:
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        cache = DigestCache(state.cache_path)
        watcher = Watcher(
            config=cfg,
            reload_config=lambda log: read_config(cfg.path, log=log, profiles=profiles),
            make_pipeline=lambda c: session.pipeline(c, state),
            cache=cache,
            debounce=debounce,
            jobs=jobs,
            log=_log,
            on_status=state.write_status,
            exec_command=runner,
            probe_status=session.probe_status,
        )
        session.on_probe = watcher.report
        _log(
            f"watching {len(cfg.images)} image(s) of {cfg.path} (debounce {debounce * 1000:.0f} ms)"
        )
        if cfg.profiles:
            _log(f"profiles: {', '.join(cfg.profiles)} (kept when the config is reloaded)")
        if runner is not None:
            _log(f"after each delivery: `{runner.command}` (in {cfg.directory})")
        watcher.run()
        _log("stopped")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _detach(
    config: Path,
    context: str | None,
    namespace: str | None,
    debounce: float,
    jobs: int | None,
    timeout: float,
    exec_command: str | None,
    profiles: Profiles,
) -> WatchResult:
    cfg = require_config(config, profiles=profiles)
    state = StateDir(cfg.directory)
    state.ensure()
    if state.watcher_running():
        raise FatalError(
            f"a devreg watcher (pid {state.read_pid()}) is already running for this project"
        )
    argv = _foreground_argv(cfg, context, namespace, debounce, jobs, timeout, exec_command)
    argv += profiles.flags()
    try:  # appended to, never through a link a cloned repository planted as watch.log
        log_fd = append_private(state.log_path)
    except OSError as e:
        raise FatalError(f"cannot write the watcher's log {state.log_path}: {e}") from None
    with os.fdopen(log_fd, "ab") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=cfg.directory,
            start_new_session=True,
        )
    return _wait_until_watching(child, state, timeout + DETACH_GRACE)


def _foreground_argv(
    cfg: Config,
    context: str | None,
    namespace: str | None,
    debounce: float,
    jobs: int | None,
    timeout: float,
    exec_command: str | None,
) -> list[str]:
    """The same ``devreg watch`` without ``--detach``, for the background process."""
    # -q/-v carry over; --kubeconfig did already (KUBECONFIG is inherited);
    # its log is a file: no colour.
    # The config as named, never resolved: a symlinked devspace.yaml keeps its project
    # (and .devreg/) where the link is, as for every other command (hookpkg.project).
    config = project_paths(cfg.path).config
    argv = [sys.executable, "-m", "watcher", "watch", "-c", str(config)]
    argv += [*console.current().flags(), "--color", "never"]
    argv += ["--debounce", str(debounce), "--timeout", str(timeout)]
    if context:
        argv += ["--context", context]
    if namespace:
        argv += ["--namespace", namespace]
    if jobs:
        argv += ["--jobs", str(jobs)]
    if exec_command:
        argv += ["--exec", exec_command]
    return argv


def _wait_until_watching(
    child: subprocess.Popen[bytes], state: StateDir, within: float
) -> WatchResult:
    """Return once the background watcher's status says it runs; its exit, or
    no word within ``within`` seconds (then it is stopped), is a FatalError."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            tail = read_tail(state.log_path).splitlines()[-20:]
            print("\n".join(tail), file=sys.stderr)
            raise FatalError(
                f"the background watcher exited with code {code}; log: {state.log_path}"
            )
        status = state.read_status() or {}
        if status.get("pid") == child.pid and status.get("state") == "running":
            return WatchResult(pid=child.pid, log=state.log_path)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    raise FatalError(
        f"the background watcher did not start within {within:.0f} s; log: {state.log_path}"
    )
