"""watcher/build/pipeline.py: what it publishes to .devreg.env (the build and delivery
paths run end to end in tests/watcher/real_nodes_test.py, kind_cluster_test.py and
build/buildkit/), and how a push that could not reach the registry is made again."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from hookpkg.config import LocalRegistry
from hookpkg.plan import ImagePlan
from tests.configs import config, image
from tests.plugins.testenv import TestEnv
from tests.watcher.registries import free_port, running_registry
from watcher.build.contenttag import ContextIndex
from watcher.build.local import Engine, LocalDockerBackend, buildkit_cli
from watcher.build.pipeline import Pipeline, registry_has
from watcher.daemon import dotenv
from watcher.daemon.state import StateDir


def test_a_refused_image_is_left_out_and_the_others_are_written(tmp_path: Path) -> None:
    """Issue 15: one image whose value cannot be sourced unquoted (a delivery record
    edited to carry a shell expansion) keeps only that image out of .devreg.env."""
    cfg = config(LocalRegistry(enabled=False), image("api", "acme/api"), image("web", "acme/web"))
    state = StateDir(tmp_path)
    state.record_delivered("api", {"repository": "acme/api", "tag": "1.0", "path": "own-registry"})
    state.record_delivered(
        "web", {"repository": "acme/web", "tag": "$(rm -rf ~)", "path": "own-registry"}
    )
    logged: list[str] = []
    plans = {
        "api": ImagePlan("api", "own-registry", "acme/api"),
        "web": ImagePlan("web", "own-registry", "acme/web"),
    }
    pipeline = Pipeline(
        cfg, routes=plans, endpoint=None, engine=None, backend=None, state=state, log=logged.append
    )
    pipeline.env_path = tmp_path / ".devreg.env"
    pipeline.publish()
    written = dotenv.read(tmp_path / ".devreg.env")
    assert written["RUNTIME_IMAGES_API"] == "acme/api:1.0"
    assert not any(name.startswith("RUNTIME_IMAGES_WEB") for name in written)
    assert any("[web] not written to .devreg.env" in line for line in logged), logged


@dataclass
class _Endpoint:
    host: str
    push_host: str

    def close(self) -> None:
        pass


class _Ready(NamedTuple):
    pipeline: Pipeline
    index: ContextIndex
    reference: str


def _built_for(
    host: str, tmp_path: Path, testenv: TestEnv, docker_client: Any, log: Callable[[str], None]
) -> _Ready:
    """A pipeline pushing image ``app`` to the local registry at ``host``, with the
    image already built (the base image tagged under the pipeline's name and tag: the
    backend, the real one, is not needed)."""
    ctx = tmp_path / "app"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {testenv.base_image}\n")
    repository = f"{host}/devreg-test/repush-{uuid.uuid4().hex[:8]}"
    app = replace(image("app", repository), dockerfile=ctx / "Dockerfile", context=ctx)
    cfg = replace(config(LocalRegistry(enabled=True), app), directory=tmp_path)
    index = ContextIndex(ctx, ctx / "Dockerfile")
    index.scan()
    engine = Engine()
    pipeline = Pipeline(
        cfg,
        routes={"app": ImagePlan("app", "local-registry", repository)},
        endpoint=_Endpoint(host, host),
        engine=engine,
        backend=LocalDockerBackend(engine, buildkit_cli()),
        state=StateDir(tmp_path),
        log=log,
    )
    tag = pipeline.tag_for("app", pipeline.content_of("app", index.snapshot()))
    docker_client.images.get(testenv.base_image).tag(repository, tag)
    return _Ready(pipeline, index, f"{repository}:{tag}")


@pytest.mark.testenv
def test_a_push_that_meets_a_closed_port_is_made_again_once_the_registry_answers(
    testenv: TestEnv, docker_client: Any, tmp_path: Path
) -> None:
    """The registry's node port closed for a moment (kube-proxy reprogramming it, the
    pod replaced; seen in CI right after `devreg up`): the real engine's push is refused,
    the pipeline waits until the registry answers, then pushes again. The registry here
    is a real one that starts only once the first push has failed."""
    port = free_port()
    host = f"127.0.0.1:{port}"
    logged: list[str] = []
    with contextlib.ExitStack() as stack:

        def log(line: str) -> None:
            logged.append(line)
            if "pushing again once" in line:  # the first push failed: the registry starts
                stack.enter_context(running_registry(tmp_path / "registry", port=port))

        ready = _built_for(host, tmp_path, testenv, docker_client, log)
        stack.callback(docker_client.images.remove, ready.reference)
        outcome = ready.pipeline.run("app", ready.index.snapshot(), cancel=threading.Event())
        assert outcome.state == "pushed", (outcome.error, logged)
        repository, _, tag = ready.reference.rpartition(":")
        assert registry_has(host, repository, tag) is True
    refusal = next(line for line in logged if "pushing again once" in line)
    assert "connection refused" in refusal and host in refusal, logged


@pytest.mark.testenv
def test_a_registry_that_stays_closed_fails_the_push_with_the_engines_words(
    testenv: TestEnv, docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("watcher.build.pipeline.REPUSH_WAIT", 0.5)
    ready = _built_for(f"127.0.0.1:{free_port()}", tmp_path, testenv, docker_client, print)
    try:
        outcome = ready.pipeline.run("app", ready.index.snapshot(), cancel=threading.Event())
    finally:
        docker_client.images.remove(ready.reference)
    assert outcome.state == "failed", outcome
    assert outcome.error and "push failed" in outcome.error, outcome
    assert "connection refused" in outcome.error
    assert not (tmp_path / ".devreg.env").exists()  # nothing published for a failed push
