"""``devreg watch --detach`` end to end through the real command line, on a
copy of examples/hello, with the real Docker engine, registry and API server:
edit → new tag in the registry → ``.devreg.env`` → ``devreg env``/``status``
→ ``devreg stop`` with nothing left running."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.watcher.e2e import (
    copy_example,
    devreg,
    group_members,
    processes_mentioning,
    published_registry,
    registry_tags,
    wait_for,
)
from watcher.daemon import dotenv

pytestmark = [pytest.mark.slow]


def _env_tag(project: Path) -> str | None:
    return dotenv.read(project / ".devreg.env").get("RUNTIME_IMAGES_APP_TAG")


def _status(project: Path, *args: str) -> dict[str, Any]:
    """``devreg status -o json``; it exits 1 whenever the watcher is not running or
    something failed (an invalid edit, a failed --exec run), which these tests make."""
    done = devreg("status", "--format", "json", *args, cwd=project, check=False)
    assert done.returncode in (0, 1), done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def _edit_and_see_it_delivered(project: Path, push_host: str, repository: str) -> str:
    """Edit a source file; wait until the registry lists a new tag and
    ``.devreg.env`` names it. Returns the tag."""
    before = wait_for(lambda: _env_tag(project), what="the first build in .devreg.env")
    with open(project / "src" / "hello.sh", "a") as f:
        f.write(f"echo {secrets.token_hex(8)}\n")
    tag = wait_for(
        lambda: (t := _env_tag(project)) != before and t,
        timeout=90,
        what=".devreg.env to carry the rebuilt image",
    )
    assert tag in registry_tags(push_host, repository)
    return tag


def _check_variables_agree(project: Path) -> None:
    """bash, python-dotenv and ``devreg env --format json`` read the same."""
    from dotenv import dotenv_values

    as_json = json.loads(devreg("env", "--format", "json", cwd=project).stdout)
    shell = subprocess.run(
        ["bash", "-c", ". ./.devreg.env; echo $RUNTIME_IMAGES_APP; env"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout.splitlines()
    assert shell[0] == as_json["RUNTIME_IMAGES_APP"]
    sourced = {k: v for k, _, v in (line.partition("=") for line in shell[1:]) if k in as_json}
    assert sourced == as_json
    assert dict(dotenv_values(project / ".devreg.env")) == as_json


def _stop_and_check_nothing_is_left(project: Path) -> None:
    pid = int((project / ".devreg" / "watch.pid").read_text())
    out = devreg("stop", cwd=project).stdout
    assert f"stopped the devreg watcher (pid {pid})" in out
    wait_for(lambda: not processes_mentioning(str(project)), timeout=15, what="no process left")
    assert not group_members(pid)
    assert not (project / ".devreg" / "watch.pid").exists()
    assert not [p for p in project.iterdir() if p.name.endswith(".tmp")]
    assert "stopped" in (project / ".devreg" / "watch.log").read_text()


def test_watch_detach_kep1755_registry(tmp_path: Path, testenv: Any) -> None:
    """The cluster publishes the loopback registry (KEP-1755): real builds
    are pushed there under ``<host>/<path>``."""
    name = f"e2e-{secrets.token_hex(4)}"
    project = copy_example(tmp_path / "hello", image=f"ghcr.io/devreg-test/{name}").parent
    with published_registry(testenv, testenv.registry):
        out = devreg("watch", "--detach", cwd=project).stdout
    try:
        assert "running in the background" in out
        tag = _edit_and_see_it_delivered(project, testenv.registry, f"devreg-test/{name}")
        env = dotenv.read(project / ".devreg.env")
        assert env["RUNTIME_IMAGES_APP"] == f"{testenv.registry}/devreg-test/{name}:{tag}"
        assert env["DEVREG_REGISTRY"] == testenv.registry
        _check_variables_agree(project)
        status = _status(project)
        assert status["watcher"]["running"]
        image = status["watcher"]["images"]["app"]
        assert (image["state"], image["tag"], image["path"]) == ("ok", tag, "local-registry")
        assert image["builds"] >= 1 and image["last_error"] is None
    finally:
        _stop_and_check_nothing_is_left(project)
    assert not _status(project)["watcher"]["running"]


def test_watch_detach_node_port_on_localhost(
    tmp_path: Path, testenv: Any, namespace: str, own_registry: None
) -> None:
    """The registry devreg deploys, on a real node (scripts/testenv part ``nodes``),
    reached at ``localhost:<nodePort>`` through kube-proxy, as on kind or minikube."""
    from hookpkg.project import load_project
    from watcher.cluster.registry import ensure_registry
    from watcher.cluster.registryhttp import answers_v2

    config_path = copy_example(tmp_path / "hello", image=f"devreg-test/np-{secrets.token_hex(4)}")
    project = config_path.parent
    config = load_project(config_path).config
    assert config is not None
    first = ensure_registry(
        config, context=testenv.context, namespace=namespace, timeout=90, require_reach=False
    )
    first.close()
    host = f"localhost:{first.node_port}"
    # kube-proxy programs the node port a moment after the pod is Ready.
    wait_for(lambda: answers_v2(host) is None, timeout=60, what=f"{host} to answer")
    devreg("watch", "--detach", "--namespace", namespace, cwd=project)
    try:
        repository = config.images["app"].image
        tag = _edit_and_see_it_delivered(project, f"127.0.0.1:{first.node_port}", repository)
        env = dotenv.read(project / ".devreg.env")
        assert env["RUNTIME_IMAGES_APP"] == f"{host}/{config.images['app'].image}:{tag}"
        assert env["DEVREG_REGISTRY"] == host
        _check_variables_agree(project)
        status = _status(project, "--namespace", namespace)
        assert status["watcher"]["images"]["app"]["tag"] == tag
        assert status["registry"]["node_port"] == first.node_port
        assert status["registry"]["answers"]
    finally:
        _stop_and_check_nothing_is_left(project)


def test_invalid_config_edit_is_reported_and_the_last_good_one_keeps_working(
    tmp_path: Path, testenv: Any
) -> None:
    name = f"cfg-{secrets.token_hex(4)}"
    config_path = copy_example(tmp_path / "hello", image=f"ghcr.io/devreg-test/{name}")
    project = config_path.parent
    good = config_path.read_text()
    with published_registry(testenv, testenv.registry):
        devreg("watch", "--detach", cwd=project)
    try:
        wait_for(lambda: _env_tag(project), what="the first build")
        # An unknown key in localRegistry: line 9 (1-based), column 3.
        config_path.write_text(
            good.replace("  localbuild: true", "  localbuild: true\n  locaBuild: true")
        )
        errors = wait_for(
            lambda: _status(project)["watcher"].get("config_errors"),
            what="the invalid edit in `devreg status`",
        )
        assert any("devspace.yaml:10:3: error:" in e and "localbuild" in e for e in errors), errors
        log = (project / ".devreg" / "watch.log").read_text()
        assert "devspace.yaml:10:3: error:" in log
        assert "keeping the last good configuration" in log
        text = devreg("status", cwd=project, check=False)
        assert text.returncode == 1  # the watcher runs on the last good config: failing
        assert "devspace.yaml:10:3: error:" in text.stdout
        # The last good configuration still builds a source edit.
        _edit_and_see_it_delivered(project, testenv.registry, f"devreg-test/{name}")
        config_path.write_text(good)
        wait_for(
            lambda: _status(project)["watcher"].get("config_errors") == [],
            what="the fixed config to clear the error",
        )
    finally:
        _stop_and_check_nothing_is_left(project)


def test_sigterm_during_a_build_leaves_no_process_and_no_partial_file(
    tmp_path: Path, testenv: Any
) -> None:
    name = f"term-{secrets.token_hex(4)}"
    config_path = copy_example(tmp_path / "hello", image=f"ghcr.io/devreg-test/{name}")
    project = config_path.parent
    marker = str(4000 + secrets.randbelow(1000))
    with open(project / "Dockerfile", "a") as f:
        f.write(f"RUN echo slow-step; sleep {marker}\n")
    with published_registry(testenv, testenv.registry):
        devreg("watch", "--detach", cwd=project)
    pid = int((project / ".devreg" / "watch.pid").read_text())
    wait_for(
        lambda: "slow-step" in (project / ".devreg" / "watch.log").read_text(),
        timeout=90,
        what="the slow build step to start",
    )
    # The build's docker CLI runs in its own process group (a child of the watcher).
    builds = [p for p, cmd in processes_mentioning(str(project)) if " build " in cmd and p != pid]
    assert builds, processes_mentioning(str(project))
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not processes_mentioning(str(project)), timeout=20, what="the watcher to end")
    for build in builds:
        assert not group_members(build)
    # The RUN step's own process (inside the engine) is stopped with its session.
    wait_for(
        lambda: (
            not any(f"sleep {marker}" in cmd for _, cmd in processes_mentioning(f"sleep {marker}"))
        ),
        timeout=30,
        what="the RUN step's process to end",
    )
    assert not [p.name for p in project.iterdir() if p.name.endswith(".tmp")]
    assert not [p.name for p in (project / ".devreg").iterdir() if p.name.endswith(".tmp")]
    assert "SIGTERM: stopping" in (project / ".devreg" / "watch.log").read_text()
    assert not (project / ".devreg" / "watch.pid").exists()


def test_a_reader_never_sees_a_partial_env_file(tmp_path: Path, testenv: Any) -> None:
    """A shell loop sources ``.devreg.env`` while the watcher rewrites it."""
    name = f"read-{secrets.token_hex(4)}"
    project = copy_example(tmp_path / "hello", image=f"ghcr.io/devreg-test/{name}").parent
    with published_registry(testenv, testenv.registry):
        devreg("watch", "--detach", cwd=project)
    stop = threading.Event()
    seen: list[str] = []
    bad: list[str] = []

    def read_loop() -> None:
        env_file = project / ".devreg.env"
        while not stop.is_set():
            try:
                text = env_file.read_text()
            except FileNotFoundError:
                continue
            values = dotenv.parse(text)
            if not text.endswith("\n") or len(values) != 6:
                bad.append(text)
            seen.append(values.get("RUNTIME_IMAGES_APP_TAG", ""))

    try:
        wait_for(lambda: _env_tag(project), what="the first build")
        reader = threading.Thread(target=read_loop)
        reader.start()
        try:
            tags = {_env_tag(project)}
            for _ in range(3):
                tags.add(
                    _edit_and_see_it_delivered(project, testenv.registry, f"devreg-test/{name}")
                )
        finally:
            stop.set()
            reader.join()
        assert not bad, bad[:3]
        assert len(set(seen)) >= 3 and set(seen) <= tags
    finally:
        _stop_and_check_nothing_is_left(project)


# --- --exec CMD -------------------------------------------------------------------------------


def _exec_status(project: Path) -> dict[str, Any]:
    info: dict[str, Any] = _status(project)["watcher"]["exec"] or {}
    return info


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_watch_exec_runs_after_each_delivery_and_a_slow_run_is_waited_for(
    tmp_path: Path, testenv: Any
) -> None:
    """CMD gets the new variables after each delivery. A delivery during a
    slow run waits for it; the deliveries that came meanwhile make one more
    run, with the newest variables. Each run waits for a gate file named
    after its tag (outside the project: a write into the build context would
    be a change to build). `devreg stop` during a run ends it and all it
    started."""
    name = f"exec-{secrets.token_hex(4)}"
    project = copy_example(tmp_path / "hello", image=f"ghcr.io/devreg-test/{name}").parent
    runs, gates = tmp_path / "runs", tmp_path / "gates"
    gates.mkdir()
    command = (
        f'pwd; echo "start $RUNTIME_IMAGES_APP_TAG $DEVREG_IMAGES" >> {runs}; '
        f"while [ ! -e {gates}/$RUNTIME_IMAGES_APP_TAG ]; do sleep 0.05; done; "
        f'echo "end $RUNTIME_IMAGES_APP" >> {runs}'
    )
    with published_registry(testenv, testenv.registry):
        devreg("watch", "--detach", "--exec", command, cwd=project)
    try:
        tag0 = wait_for(lambda: _env_tag(project), what="the first delivery")
        wait_for(lambda: _lines(runs) == [f"start {tag0} app"], what="the first run")
        tag1 = _edit_and_see_it_delivered(project, testenv.registry, f"devreg-test/{name}")
        wait_for(lambda: _exec_status(project).get("pending"), what="the waiting run")
        tag2 = _edit_and_see_it_delivered(project, testenv.registry, f"devreg-test/{name}")
        assert _lines(runs) == [f"start {tag0} app"]  # still the first run
        (gates / tag0).touch()
        (gates / tag2).touch()
        ref = f"{testenv.registry}/devreg-test/{name}"
        wait_for(
            lambda: _lines(runs)[3:] == [f"end {ref}:{tag2}"], timeout=30, what="the second run"
        )
        assert _lines(runs) == [
            f"start {tag0} app",
            f"end {ref}:{tag0}",
            f"start {tag2} app",  # tag1 is never deployed: tag2 had replaced it
            f"end {ref}:{tag2}",
        ]
        assert tag1 not in runs.read_text()
        info = wait_for(
            lambda: (e := _exec_status(project))["state"] == "ok" and not e["pending"] and e,
            what="the run to be recorded",
        )
        assert (info["command"], info["runs"], info["failures"]) == (command, 2, 0)
        assert info["last"]["exit_code"] == 0 and info["last"]["images"] == ["app"]
        log = (project / ".devreg" / "watch.log").read_text()
        assert f"[exec] running `{command}` (images: app)" in log
        assert f"[exec] {project}\n" in log  # pwd: the config's directory, output in the log

        # A run in progress when the watcher stops is stopped with everything it started.
        tag3 = _edit_and_see_it_delivered(project, testenv.registry, f"devreg-test/{name}")
        wait_for(lambda: _lines(runs)[-1:] == [f"start {tag3} app"], what="the third run")
        assert _exec_status(project)["state"] == "running"
    finally:
        _stop_and_check_nothing_is_left(project)
    info = _exec_status(project)
    assert info["state"] == "stopped" and info["last"]["outcome"] == "stopped with devreg"


def test_watch_exec_failure_is_in_status_and_the_watcher_keeps_building(
    tmp_path: Path, testenv: Any
) -> None:
    name = f"execfail-{secrets.token_hex(4)}"
    project = copy_example(tmp_path / "hello", image=f"ghcr.io/devreg-test/{name}").parent
    runs = tmp_path / "runs"
    command = (
        f'echo "ran $RUNTIME_IMAGES_APP_TAG" >> {runs}; '
        "echo boom-$RUNTIME_IMAGES_APP_TAG >&2; exit 3"
    )
    with published_registry(testenv, testenv.registry):
        devreg("watch", "--detach", "--exec", command, cwd=project)
    try:
        tag0 = wait_for(lambda: _env_tag(project), what="the first delivery")
        info = wait_for(
            lambda: (e := _exec_status(project))["state"] == "failed" and e,
            what="the failed run in `devreg status`",
        )
        assert info["last"]["exit_code"] == 3 and info["last"]["outcome"] == "exited 3"
        assert info["last"]["tail"] == [f"boom-{tag0}"]
        # The watcher goes on: an edit is built and delivered, and CMD runs again.
        tag1 = _edit_and_see_it_delivered(project, testenv.registry, f"devreg-test/{name}")
        wait_for(lambda: _exec_status(project)["failures"] == 2, what="the second run")
        assert _lines(runs) == [f"ran {tag0}", f"ran {tag1}"]
        status = _status(project)
        assert status["watcher"]["running"]
        assert status["watcher"]["images"]["app"]["state"] == "ok"
        text = devreg("status", cwd=project, check=False)
        assert text.returncode == 1  # the last --exec run failed
        assert f"  exec `{command}`: FAILED, exited 3 after " in text.stdout
        assert f"\n      boom-{tag1}\n" in text.stdout
        log = (project / ".devreg" / "watch.log").read_text()
        assert f"[exec] boom-{tag1}" in log
        assert "; the watcher goes on" in log
    finally:
        _stop_and_check_nothing_is_left(project)


def test_watch_detach_with_a_symlinked_config_keeps_the_project_where_the_link_is(
    tmp_path: Path, testenv: Any
) -> None:
    """The background watcher is given the config as named: its lock, status and
    .devreg.env are beside the link, where `devreg watch --detach` waits for them and
    `status`/`stop` look (the target's directory gets nothing)."""
    name = f"e2e-{secrets.token_hex(4)}"
    project = copy_example(tmp_path / "hello", image=f"ghcr.io/devreg-test/{name}").parent
    shared = tmp_path / "shared"
    shared.mkdir()
    (project / "devspace.yaml").rename(shared / "devspace.yaml")
    (project / "devspace.yaml").symlink_to(shared / "devspace.yaml")
    with published_registry(testenv, testenv.registry):
        out = devreg("watch", "--detach", cwd=project).stdout
    try:
        assert "running in the background" in out
        assert _status(project)["watcher"]["running"]
        wait_for(lambda: _env_tag(project), what="the first build in .devreg.env")
        assert not (shared / ".devreg").exists() and not (shared / ".devreg.env").exists()
    finally:
        _stop_and_check_nothing_is_left(project)
