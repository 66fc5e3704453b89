from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.observers import Observer

from tests.watcher.e2e import (
    PrivateDockerd,
    copy_example,
    devreg,
    kubeconfig_with_context,
    processes_mentioning,
    published_registry,
    registry_tags,
    wait_for,
)
from watcher.build.contenttag import ContextIndex
from watcher.daemon import dotenv
from watcher.daemon.watch import EVENT_TYPES, _Handler, inotify_watches, plan_schedules


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
    index = ContextIndex(tmp_path, tmp_path / "Dockerfile")
    index.scan()
    kept_dirs = {str(tmp_path), *(str(tmp_path / d) for d in ("src", "src/a", "src/a/b", "src/c"))}
    before = inotify_watches(os.getpid())
    events: Any = __import__("queue").SimpleQueue()
    handler = _Handler(events, (str(tmp_path / ".devreg"),))
    for path, recursive in plan_schedules(index):
        observer.schedule(handler, path, recursive=recursive, event_filter=EVENT_TYPES)
    assert inotify_watches(os.getpid()) - before == len(kept_dirs)
    # A change in a kept directory arrives, one in node_modules never does.
    (tmp_path / "node_modules" / "pkg1" / "lib" / "index.js").write_text("changed")
    (tmp_path / "src" / "a" / "b" / "f.txt").write_text("changed")
    got = wait_for(lambda: None if events.empty() else events.get_nowait(), what="an event")
    assert got[0].startswith(str(tmp_path / "src"))


def _dirs(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).mkdir(parents=True)
        (root / rel / "f").write_text(rel)


@pytest.mark.parametrize(
    ("tree", "ignore", "schedules"),
    [
        pytest.param(("a/b", "c"), "", {("", True)}, id="nothing-ignored-one-recursive"),
        pytest.param(
            ("a/b", "c", "node_modules/x"),
            "node_modules\n",
            {("", False), ("a", True), ("c", True)},
            id="ignored-dir-not-watched",
        ),
        pytest.param(
            ("a/b/node_modules/x", "a/c", "d"),
            "**/node_modules\n",
            {("", False), ("a", False), ("a/b", False), ("a/c", True), ("d", True)},
            id="the-way-to-an-ignored-dir",
        ),
        pytest.param(
            ("src", ".git/objects"), "", {("", False), ("src", True)}, id="git-never-watched"
        ),
        pytest.param(
            ("node_modules/keep/lib", "node_modules/other"),
            "node_modules\n!node_modules/keep\n",
            {("", False), ("node_modules", False), ("node_modules/keep", True)},
            id="exception-reaches-into-ignored-dir",
        ),
    ],
)
def test_schedules_cover_exactly_the_directories_the_walk_entered(
    tmp_path: Path, tree: tuple[str, ...], ignore: str, schedules: set[tuple[str, bool]]
) -> None:
    _dirs(tmp_path, *tree)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    if ignore:
        (tmp_path / ".dockerignore").write_text(ignore)
    index = ContextIndex(tmp_path, tmp_path / "Dockerfile")
    index.scan()
    root = str(tmp_path)
    assert {(path[len(root) + 1 :], r) for path, r in plan_schedules(index)} == schedules


def test_schedules_follow_the_index_through_changes(tmp_path: Path) -> None:
    """New, moved and deleted directories reach the plan through ``update``."""
    _dirs(tmp_path, "a", "b/node_modules/x")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text("**/node_modules\n")
    index = ContextIndex(tmp_path, tmp_path / "Dockerfile")
    index.scan()
    root = str(tmp_path)
    assert set(plan_schedules(index)) == {(root, False), (f"{root}/a", True), (f"{root}/b", False)}
    shutil.rmtree(tmp_path / "b")
    _dirs(tmp_path, "a/node_modules/y")
    index.update([f"{root}/b", f"{root}/a/node_modules"])
    assert set(plan_schedules(index)) == {(root, False), (f"{root}/a", False)}
    (tmp_path / "a").rename(tmp_path / "c")
    index.update([f"{root}/a", f"{root}/c"])
    assert set(plan_schedules(index)) == {(root, False), (f"{root}/c", False)}
    assert index.pruned == {"c/node_modules"}


@pytest.mark.parametrize(
    ("events", "writing"),
    [
        pytest.param([("/p/a", "modified", False)], {"/p/a"}, id="write-in-progress"),
        pytest.param([("/p/a", "modified", False), ("/p/a", "closed", False)], set(), id="saved"),
        pytest.param(
            [
                ("/p/.a.tmp", "created", False),
                ("/p/.a.tmp", "moved", False),
                ("/p/a", "moved", False),
            ],
            set(),
            id="renamed-into-place",
        ),
        pytest.param([("/p/d", "modified", True)], set(), id="directory"),
        pytest.param(
            [("/p/a", "modified", False), ("/p/a", "deleted", False)], set(), id="deleted"
        ),
    ],
)
def test_a_save_is_complete_when_every_written_file_is_closed(
    events: list[tuple[str, str, bool]], writing: set[str]
) -> None:
    from watcher.daemon.watch import _track_writes

    state: set[str] = set()
    for event in events:
        _track_writes(state, event)
    assert state == writing


# --- with the real engine and registry ------------------------------------------------


def _project(root: Path, base_image: str, name: str) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.sh").write_text("echo v1\n")
    (root / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY src/ /app/\nRUN --mount=type=cache,target=/cache cp /app/main.sh /cache/\n"
    )
    (root / ".dockerignore").write_text(".devreg\n.devreg.env\n")
    (root / "devspace.yaml").write_text(
        "version: v2beta1\nname: t\nlocalRegistry:\n  enabled: true\n  localbuild: true\n"
        f"images:\n  app:\n    image: ghcr.io/devreg-test/{name}\n"
    )
    return root / "devspace.yaml"


@pytest.mark.slow
def test_watcher_rebuilds_skips_touches_keeps_last_good_on_a_broken_dockerfile(
    tmp_path: Path, testenv: Any
) -> None:
    from hookpkg.project import load_project
    from watcher.build.contenttag import DigestCache
    from watcher.build.pipeline import registry_has
    from watcher.daemon import dotenv
    from watcher.daemon.session import Session
    from watcher.daemon.state import StateDir
    from watcher.daemon.watch import Watcher

    name = f"w-{secrets.token_hex(4)}"
    config_path = _project(tmp_path / "p", testenv.base_image, name)
    config = load_project(config_path).config
    assert config is not None
    state = StateDir(config.directory)
    state.acquire()
    lines: list[str] = []
    session = Session(context=testenv.context, namespace=None, timeout=30, log=lines.append)
    w = Watcher(
        config=config,
        reload_config=lambda log: load_project(config_path).config,
        make_pipeline=lambda c: session.pipeline(c, state),
        cache=DigestCache(state.cache_path),
        log=lines.append,
        on_status=state.write_status,
    )
    t = threading.Thread(target=w.run)
    with published_registry(testenv, testenv.registry):
        t.start()
        wait_for(lambda: w.pipeline, what="the watcher to reach the registry")
    env_file = config.directory / ".devreg.env"
    try:
        first = wait_for(
            lambda: dotenv.read(env_file).get("RUNTIME_IMAGES_APP_TAG"), what="first build"
        )
        (config.directory / "src" / "main.sh").write_text("echo v2\n")
        second = wait_for(
            lambda: (v := dotenv.read(env_file).get("RUNTIME_IMAGES_APP_TAG")) != first and v,
            what="rebuild",
        )
        repo = f"{testenv.registry}/devreg-test/{name}"
        assert registry_has(testenv.registry, repo, second)
        builds = w.slots["app"].builds
        for _ in range(3):  # no content change: no build
            os.utime(config.directory / "src" / "main.sh")
            (config.directory / "src" / "main.sh").write_text("echo v2\n")
        # A broken Dockerfile: the old values stay, the log's tail is reported.
        with open(config.directory / "Dockerfile", "a") as f:
            f.write("RUN echo broken-step; exit 7\n")
        wait_for(lambda: w.slots["app"].state == "failed", what="failure")
        assert dotenv.read(env_file)["RUNTIME_IMAGES_APP_TAG"] == second
        tail = w.slots["app"].tail
        assert any("exit code: 7" in line for line in tail), tail
        assert any("broken-step" in line for line in tail), tail
        assert w.slots["app"].builds == builds  # the touches built nothing
        status = state.read_status()
        assert status is not None
        assert status["images"]["app"]["state"] == "failed"
        assert status["images"]["app"]["last_error_tail"] == list(tail)
        assert any("FAILED" in line for line in lines)
    finally:
        w.stop()
        t.join()
        session.close()
        state.release()


@pytest.mark.slow
def test_a_registry_restarted_empty_gets_the_images_again(tmp_path: Path, testenv: Any) -> None:
    """The loopback registry (a process of this test) is killed and started
    again with empty storage: the watcher pushes the current image again
    without any file change (SPEC §7)."""
    from tests.watcher.registries import free_port, running_registry

    name = f"heal-{secrets.token_hex(4)}"
    project = copy_example(tmp_path / "hello", image=f"ghcr.io/devreg-test/{name}").parent
    port = free_port()
    host = f"127.0.0.1:{port}"
    repository = f"devreg-test/{name}"
    with running_registry(tmp_path / "before", port=port):
        with published_registry(testenv, host):
            devreg("watch", "--detach", cwd=project)
        try:
            tag = wait_for(
                lambda: dotenv.read(project / ".devreg.env").get("RUNTIME_IMAGES_APP_TAG"),
                what="the first push",
            )
            assert registry_tags(host, repository) == [tag]
        except BaseException:
            devreg("stop", cwd=project)
            raise
    try:
        with running_registry(tmp_path / "after", port=port):  # empty storage
            assert registry_tags(host, repository) == []
            wait_for(
                lambda: registry_tags(host, repository) == [tag],
                timeout=60,
                what="the image to be pushed again",
            )
            log = (project / ".devreg" / "watch.log").read_text()
            assert f"the registry lost {host}/{repository}:{tag}; pushing it again" in log
            assert dotenv.read(project / ".devreg.env")["RUNTIME_IMAGES_APP_TAG"] == tag
            # (exit 1: the published registry is gone, so status finds none the image needs)
            done = devreg("status", "--format", "json", cwd=project, check=False)
            status = json.loads(done.stdout)
            assert status["watcher"]["images"]["app"]["builds"] == 1  # pushed, not rebuilt
    finally:
        devreg("stop", cwd=project)
    assert not processes_mentioning(str(project))


@pytest.mark.slow
def test_the_watcher_survives_an_engine_restart(tmp_path: Path, testenv: Any) -> None:
    """dockerd stops while the watcher runs: a change then fails with a clear
    error and the old values stay; once dockerd is back the next change
    builds. A private engine takes the restart, not the shared one."""
    engine = PrivateDockerd(Path(tempfile.mkdtemp(prefix="devreg-dockerd-")))
    engine.start()
    project = copy_example(tmp_path / "hello", image="devreg-test/outage").parent
    config = project / "devspace.yaml"
    # A local engine (docker-desktop): built in the engine, nothing to move.
    config.write_text(config.read_text().replace("  enabled: true\n", ""))
    env = {
        "DOCKER_HOST": engine.host,
        "KUBECONFIG": str(kubeconfig_with_context(testenv, tmp_path / "kc", "docker-desktop")),
    }
    env_file = project / ".devreg.env"
    started = False
    try:
        engine.load(testenv.base_image)
        devreg("watch", "--detach", cwd=project, env=env)
        started = True
        first = wait_for(
            lambda: dotenv.read(env_file).get("RUNTIME_IMAGES_APP_TAG"), what="the first build"
        )
        engine.stop()
        with open(project / "src" / "hello.sh", "a") as f:
            f.write("echo during-the-outage\n")

        def failed() -> dict[str, Any] | None:
            done = devreg("status", "--format", "json", cwd=project, check=False)
            image: dict[str, Any] = json.loads(done.stdout)["watcher"]["images"]["app"]
            if image["state"] != "failed":
                return None
            assert done.returncode == 1  # status exits 1 while an image's last build failed
            return image

        image = wait_for(failed, timeout=60, what="the build to fail while dockerd is down")
        assert image["last_error"], image
        assert dotenv.read(env_file)["RUNTIME_IMAGES_APP_TAG"] == first
        engine.start()
        with open(project / "src" / "hello.sh", "a") as f:
            f.write("echo after-the-outage\n")
        tag = wait_for(
            lambda: (t := dotenv.read(env_file).get("RUNTIME_IMAGES_APP_TAG")) != first and t,
            timeout=120,
            what="a build once dockerd is back",
        )
        done = subprocess.run(
            ["docker", "-H", engine.host, "image", "inspect", f"devreg-test/outage:{tag}"],
            capture_output=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    finally:
        if started:
            devreg("stop", cwd=project, env=env)
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)
    assert not processes_mentioning(str(project))
