from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.observers import Observer

from watcher.dockerignore import ContextFilter
from watcher.watch import EVENT_TYPES, _Handler, inotify_watches, plan_schedules

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "testenv.py"


def _wait(cond: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _tree(root: Path, modules: int = 200) -> None:
    for d in ("src/a/b", "src/c", "docs"):
        (root / d).mkdir(parents=True)
        (root / d / "f.txt").write_text(d)
    for i in range(modules):
        p = root / "node_modules" / f"pkg{i}" / "lib"
        p.mkdir(parents=True)
        (p / "index.js").write_text(str(i))
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / ".dockerignore").write_text("node_modules\ndocs\n")


@pytest.fixture
def observer() -> Iterator[Any]:
    obs = Observer()
    obs.start()
    yield obs
    obs.stop()
    obs.join()


def test_ignored_directories_cost_no_watch(tmp_path: Path, observer: Any) -> None:
    _tree(tmp_path)
    flt = ContextFilter(tmp_path, tmp_path / "Dockerfile")
    kept_dirs = {str(p) for p in flt.watched_dirs()}
    assert kept_dirs == {
        str(tmp_path),
        *(str(tmp_path / d) for d in ("src", "src/a", "src/a/b", "src/c")),
    }
    before = inotify_watches(os.getpid())
    events: Any = __import__("queue").SimpleQueue()
    handler = _Handler(events, (str(tmp_path / ".devreg"),))
    for path, recursive in plan_schedules(flt):
        observer.schedule(handler, path, recursive=recursive, event_filter=EVENT_TYPES)
    assert inotify_watches(os.getpid()) - before == len(kept_dirs)
    # A change in a kept directory arrives, one in node_modules never does.
    (tmp_path / "node_modules" / "pkg1" / "lib" / "index.js").write_text("changed")
    (tmp_path / "src" / "a" / "b" / "f.txt").write_text("changed")
    got = _wait(lambda: None if events.empty() else events.get_nowait(), what="an event")
    assert got[0].startswith(str(tmp_path / "src"))


# --- with the real engine and registry ------------------------------------------------

needs_env = pytest.mark.skipif(
    not PLUGIN.exists(), reason="tests/plugins/testenv.py (issue 3) is not there yet"
)


class _LoopbackRegistry:
    """The test registry as the cluster's KEP-1755 registry would give it."""

    def __init__(self, host: str) -> None:
        self.host = self.push_host = host

    def close(self) -> None:
        pass


def _project(root: Path, base_image: str) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.sh").write_text("echo v1\n")
    (root / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY src/ /app/\nRUN --mount=type=cache,target=/cache cp /app/main.sh /cache/\n"
    )
    (root / ".dockerignore").write_text(".devreg\n.devreg.env\n")
    (root / "devspace.yaml").write_text(
        "version: v2beta1\nname: t\nlocalRegistry:\n  enabled: true\n  localbuild: true\n"
        "images:\n  app:\n    image: ghcr.io/example/t\n"
    )
    return root / "devspace.yaml"


@needs_env
@pytest.mark.testenv
@pytest.mark.slow
def test_watcher_rebuilds_cancels_keeps_last_good_and_heals(
    tmp_path: Path, testenv: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watcher.session as session_mod
    from hookpkg.config import load_config
    from watcher import dotenv
    from watcher.contenttag import DigestCache
    from watcher.pipeline import registry_has
    from watcher.session import Session
    from watcher.state import StateDir
    from watcher.watch import Watcher

    monkeypatch.setenv("DOCKER_HOST", testenv.docker_host)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    endpoint = _LoopbackRegistry(testenv.registry)
    monkeypatch.setattr(session_mod, "connect_registry", lambda *a, **k: endpoint)
    config_path = _project(tmp_path / "p", testenv.base_image)
    config, _ = load_config(config_path)
    assert config is not None
    state = StateDir(config.directory)
    state.acquire()
    lines: list[str] = []
    session = Session(context=None, namespace=None, timeout=10, log=lines.append)
    w = Watcher(
        config=config,
        reload_config=lambda: load_config(config_path)[0],
        make_pipeline=lambda c: session.pipeline(c, state),
        cache=DigestCache(state.cache_path),
        log=lines.append,
        on_status=state.write_status,
    )
    t = threading.Thread(target=w.run)
    t.start()
    env_file = config.directory / ".devreg.env"
    try:
        first = _wait(
            lambda: dotenv.read(env_file).get("RUNTIME_IMAGES_APP_TAG"), what="first build"
        )
        (config.directory / "src" / "main.sh").write_text("echo v2\n")
        second = _wait(
            lambda: (v := dotenv.read(env_file).get("RUNTIME_IMAGES_APP_TAG")) != first and v,
            what="rebuild",
        )
        repo = f"{testenv.registry}/example/t"
        assert registry_has(testenv.registry, repo, second)
        builds = w.slots["app"].builds
        os.utime(config.directory / "src" / "main.sh")  # no content change: no build
        # A broken Dockerfile: the old values stay, the log's tail is reported.
        with open(config.directory / "Dockerfile", "a") as f:
            f.write("RUN exit 7\n")
        _wait(lambda: w.slots["app"].state == "failed", what="failure")
        assert dotenv.read(env_file)["RUNTIME_IMAGES_APP_TAG"] == second
        assert any("exit 7" in line or "exit code: 7" in line for line in w.slots["app"].tail)
        assert w.slots["app"].builds == builds
    finally:
        w.stop()
        t.join()
        session.close()
        state.release()
