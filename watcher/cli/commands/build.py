"""``devreg build [KEY…] [--exec CMD]``: one build-and-deliver pass, then
``.devreg.env``, then CMD once when an image was delivered."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType

from hookpkg.config import Image
from hookpkg.errors import FatalError
from watcher import console
from watcher.build.contenttag import ContextIndex, DigestCache
from watcher.build.pipeline import Outcome, Pipeline
from watcher.cli.results import BuildResult
from watcher.daemon.exec_cmd import ExecCommand, ExecResult, check_exec
from watcher.daemon.session import Profiles, Session, require_config, stderr_log
from watcher.daemon.state import StateDir


def _prefixed(key: str) -> Callable[[str], None]:
    def log(line: str) -> None:
        stderr_log(f"[{key}] {line}")

    return log


def build(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    keys: list[str] | None = None,
    timeout: float = 120.0,
    exec_command: str | None = None,
    profiles: Sequence[str] = (),
    profile_activation: bool = True,
) -> BuildResult:
    check_exec(exec_command)
    cfg = require_config(config, profiles=Profiles(tuple(profiles), profile_activation))
    selected = list(keys or cfg.images)
    unknown = [k for k in selected if k not in cfg.images]
    if unknown:
        raise FatalError(
            f"no image {', '.join(map(repr, unknown))} in {config} "
            f"(images: {', '.join(cfg.images)})"
        )
    state = StateDir(cfg.directory)
    state.ensure()
    cache = DigestCache(state.cache_path)
    session = Session(context=context, namespace=namespace, timeout=timeout, log=stderr_log)
    results: list[Outcome] = []
    try:
        pipeline = session.pipeline(cfg, state)
        for key in selected:
            results.append(_build_one(pipeline, key, cfg.images[key], cache))
        cache.save()
        pipeline.publish()
    finally:
        session.close()
    delivered = [o.key for o in results if o.state in ("built", "pushed", "up-to-date")]
    ran = _exec_once(exec_command, cfg.directory, pipeline.env_path, delivered)
    return BuildResult(tuple(results), pipeline.env_path, ran)


def _build_one(pipeline: Pipeline, key: str, image: Image, cache: DigestCache) -> Outcome:
    """One image through the pipeline, its context scanned now; its outcome on stderr."""
    index = ContextIndex(image.context, image.dockerfile, cache)
    index.scan()
    outcome = pipeline.run(
        key,
        index.snapshot(),
        cancel=threading.Event(),
        log=_prefixed(key),
    )
    if outcome.state == "failed":
        console.problem(f"[{key}] FAILED: {outcome.error}")
        for line in outcome.tail[-20:]:
            console.problem(f"[{key}]   {line}", None)
    else:
        stderr_log(f"[{key}] {outcome.state}: {outcome.reference} ({outcome.seconds:.2f} s)")
    return outcome


def _exec_once(
    exec_command: str | None, directory: Path, env_file: Path, delivered: list[str]
) -> ExecResult | None:
    """``--exec CMD`` once when an image was delivered (None: not run)."""
    if not exec_command:
        return None
    if not delivered:
        stderr_log(f"[exec] no image was delivered; not running `{exec_command}`")
        return None
    runner = ExecCommand(exec_command, directory=directory, env_file=env_file, log=stderr_log)
    with _sigterm_stops(runner):
        return runner.run(delivered)


@contextlib.contextmanager
def _sigterm_stops(runner: ExecCommand) -> Iterator[None]:
    """SIGTERM while CMD runs stops it with its process group (``^C`` does
    already: it interrupts the read loop, which kills the group)."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        runner.close()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
