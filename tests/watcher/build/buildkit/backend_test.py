"""The in-cluster build path end to end, on real parts: a real buildkitd (runc
worker, as root) reached through :class:`LocalTransport`, pushing to the real
loopback registry of ``scripts/testenv``; the image is then pulled and run by
the real Docker Engine. Only the transport differs from a cluster: the exec
stream is tested in ``transport_test.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hookpkg.config import Image
from hookpkg.project import load_project
from tests.plugins.testenv import TestEnv
from watcher.build.backends import BuildCancelled, BuildError, BuildRequest
from watcher.build.buildkit.backend import BuildkitBackend, push_name, workdir_name
from watcher.build.buildkit.transport import LocalTransport
from watcher.build.contenttag import ContextIndex
from watcher.build.pipeline import Pipeline, Route
from watcher.daemon.state import StateDir

BUSYBOX = Path("/bin/busybox")
# No base image can be pulled here: every test image is FROM scratch with a
# static busybox from the context.
BASE = 'FROM scratch AS base\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'


@pytest.fixture(scope="module")
def static_busybox() -> Path:
    if not BUSYBOX.is_file():
        pytest.fail("Debian's busybox-static is missing (scripts/testenv installs it)")
    return BUSYBOX


@pytest.fixture
def backend(
    buildkitd: str, buildkit_bin: Path, testenv: TestEnv, tmp_path: Path
) -> BuildkitBackend:
    workroot = tmp_path / "work"
    workroot.mkdir()
    return BuildkitBackend(
        LocalTransport(workroot=str(workroot)),
        push_host=testenv.registry,
        addr=buildkitd,
        buildctl=str(buildkit_bin / "buildctl"),
    )


def project(
    root: Path, busybox: Path, dockerfile: str, *, files: dict[str, str] | None = None
) -> tuple[Path, Path]:
    ctx = root / "ctx"
    ctx.mkdir(parents=True)
    shutil.copy2(busybox, ctx / "busybox")
    for name, text in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    path = ctx / "Dockerfile"
    path.write_text(dockerfile)
    return ctx, path


def request(
    ctx: Path,
    dockerfile: Path,
    *,
    repository: str | None = None,
    tag: str | None = None,
    build_args: dict[str, str] | None = None,
    target: str | None = None,
) -> BuildRequest:
    index = ContextIndex(ctx, dockerfile)
    index.scan()
    args = build_args or {}
    # The name under which nodes pull it: the node port's host, rewritten path.
    # One repository for all these tests (unique tags): the shared registry's
    # catalog stays short.
    repository = repository or "localhost:31234/devreg-bk/app"
    image = Image(
        "app", repository, (), dockerfile, ctx, args, target, "docker", "devspace.yaml", 1, 1
    )
    return BuildRequest(
        image=image,
        repository=repository,
        tag=tag or uuid.uuid4().hex[:12],
        context=ctx,
        files=index.snapshot().files(),
        dockerfile=dockerfile,
        build_args=args,
        target=target,
        push=True,
    )


def tags(registry: str, path: str) -> list[str]:
    with urllib.request.urlopen(f"http://{registry}/v2/{path}/tags/list", timeout=10) as resp:
        return list(json.load(resp)["tags"] or [])


def run_image(docker_client: Any, reference: str) -> str:
    docker_client.images.pull(reference)
    out = docker_client.containers.run(reference, remove=True)
    return bytes(out).decode().strip()


def collect() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lines.append


def test_build_push_pull_run(
    backend: BuildkitBackend,
    testenv: TestEnv,
    docker_client: Any,
    static_busybox: Path,
    tmp_path: Path,
) -> None:
    ctx, dockerfile = project(
        tmp_path,
        static_busybox,
        BASE + 'ARG MSG=unset\nRUN echo "hello $MSG" > /msg\nCMD ["cat", "/msg"]\n',
    )
    req = request(ctx, dockerfile, build_args={"MSG": "from buildkit"})
    lines, log = collect()
    result = backend.build(req, log=log, cancel=threading.Event())

    assert result.pushed
    assert result.reference == req.reference
    assert result.image_id is not None and result.image_id.startswith("sha256:")
    assert any(line.startswith("sending all: 3 of 3 files") for line in lines), lines
    assert any("RUN echo" in line and "done in" in line for line in lines)
    path = req.repository.split("/", 1)[1]
    assert req.tag in tags(testenv.registry, path)
    # Pulled from the registry like a node would, and run.
    pushed = push_name(testenv.registry, req.repository, req.tag)
    assert run_image(docker_client, pushed) == "hello from buildkit"


def test_target_stops_at_the_named_stage(
    backend: BuildkitBackend,
    testenv: TestEnv,
    docker_client: Any,
    static_busybox: Path,
    tmp_path: Path,
) -> None:
    ctx, dockerfile = project(
        tmp_path,
        static_busybox,
        BASE
        + 'FROM base AS dev\nCMD ["echo", "dev stage"]\n'
        + 'FROM base AS prod\nRUN ["false"]\nCMD ["echo", "prod stage"]\n',
    )
    req = request(ctx, dockerfile, target="dev")
    backend.build(req, log=lambda _: None, cancel=threading.Event())
    assert (
        run_image(docker_client, push_name(testenv.registry, req.repository, req.tag))
        == "dev stage"
    )


def test_dockerfile_outside_context_and_dockerignore(
    backend: BuildkitBackend,
    testenv: TestEnv,
    docker_client: Any,
    static_busybox: Path,
    tmp_path: Path,
) -> None:
    ctx, inside = project(
        tmp_path,
        static_busybox,
        "unused",
        files={
            "app/a.txt": "a",
            "app/skip.log": "no",
            ".dockerignore": "*.log\n**/*.log\nDockerfile\n",
        },
    )
    inside.unlink()
    outside = tmp_path / "build" / "app.Dockerfile"
    outside.parent.mkdir()
    outside.write_text(BASE + 'COPY app /app\nCMD ["ls", "/app"]\n')
    req = request(ctx, outside)
    assert "app/skip.log" not in req.files
    backend.build(req, log=lambda _: None, cancel=threading.Event())
    assert run_image(docker_client, push_name(testenv.registry, req.repository, req.tag)) == "a.txt"


def test_failure_reports_the_error_and_the_log_tail(
    backend: BuildkitBackend, testenv: TestEnv, static_busybox: Path, tmp_path: Path
) -> None:
    ctx, dockerfile = project(
        tmp_path,
        static_busybox,
        BASE + 'RUN echo "compiling main.c"; echo "main.c:3: syntax error" >&2; exit 2\n',
    )
    req = request(ctx, dockerfile)
    with pytest.raises(BuildError) as info:
        backend.build(req, log=lambda _: None, cancel=threading.Event())
    err = info.value
    assert "in-cluster build of image 'app' failed at step [3/3]: failed to solve: process" in str(
        err
    )
    assert "exit code: 2" in str(err)
    assert any("main.c:3: syntax error" in line for line in err.tail)
    assert err.tail[-1].startswith("error: failed to solve:")
    assert err.exit_code == 1
    path = req.repository.split("/", 1)[1]
    try:
        pushed = tags(testenv.registry, path)
    except urllib.error.HTTPError:  # the repository does not exist yet
        pushed = []
    assert req.tag not in pushed  # nothing was pushed


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry}: {cmdline}")
    return found


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_cancel_stops_buildctl_and_the_step_and_cleans_up(
    backend: BuildkitBackend, static_busybox: Path, tmp_path: Path
) -> None:
    marker = f"{int(uuid.uuid4().int % 1000) + 1000}"  # a unique sleep length to look for
    ctx, dockerfile = project(
        tmp_path, static_busybox, BASE + f"RUN echo started; sleep {marker}\n"
    )
    req = request(ctx, dockerfile)
    cancel = threading.Event()
    started = threading.Event()
    outcome: list[BaseException | None] = []

    def log(line: str) -> None:
        if line.strip() == "started":
            started.set()

    def target() -> None:
        try:
            backend.build(req, log=log, cancel=cancel)
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        assert started.wait(60), "the RUN step never started"
        assert _processes_mentioning(f"sleep {marker}"), "the step's process is not visible"
        t0 = time.monotonic()
        cancel.set()
        thread.join(30)
        assert not thread.is_alive()
        assert time.monotonic() - t0 < 10
    finally:
        cancel.set()
        thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], BuildCancelled)
    workroot = backend.transport.workroot
    assert _processes_mentioning(workroot) == []  # buildctl and its shell are gone
    # buildkitd stops the step when its client goes away.
    wait_for(lambda: not _processes_mentioning(f"sleep {marker}"), 20, "the RUN step to stop")
    # The stop came after the unpack: the work directory is sound and the
    # next build sends only what changed.
    (ctx / "Dockerfile").write_text(BASE + 'CMD ["echo", "after cancel"]\n')
    lines, log2 = collect()
    backend.build(request(ctx, dockerfile), log=log2, cancel=threading.Event())
    assert any(line.startswith("sending changes: 2 of 3 files") for line in lines), lines


def test_buildkitd_unreachable_is_a_build_error(
    buildkit_bin: Path, testenv: TestEnv, static_busybox: Path, tmp_path: Path
) -> None:
    backend = BuildkitBackend(
        LocalTransport(),
        push_host=testenv.registry,
        addr=f"unix://{tmp_path}/nothing.sock",
        buildctl=str(buildkit_bin / "buildctl"),
    )
    ctx, dockerfile = project(tmp_path, static_busybox, BASE)
    with pytest.raises(BuildError) as info:
        backend.build(request(ctx, dockerfile), log=lambda _: None, cancel=threading.Event())
    assert "nothing.sock" in str(info.value) or "nothing.sock" in "\n".join(info.value.tail)


class LoopbackEndpoint:
    """The registry as ``watcher.cluster.registry`` would hand it to the pipeline;
    here the loopback registry of the test environment."""

    def __init__(self, registry: str) -> None:
        self.host = registry
        self.push_host = registry

    def close(self) -> None:
        pass


def test_pipeline_content_tag_and_skip_if_present(
    backend: BuildkitBackend,
    testenv: TestEnv,
    docker_client: Any,
    static_busybox: Path,
    tmp_path: Path,
) -> None:
    """The pipeline around the backend as ``localbuild: false`` wires it: no
    local engine at all, a content tag, one build that the backend pushed
    itself (the pipeline pushes nothing), and no second build for the same
    content."""
    # A new file content each run: a new content tag in a fixed repository.
    ctx, dockerfile = project(
        tmp_path,
        static_busybox,
        BASE + 'CMD ["echo", "pipeline"]\n',
        files={"nonce": uuid.uuid4().hex},
    )
    path = "devreg-bk/pipeline"
    (tmp_path / "devspace.yaml").write_text(
        f"version: v2beta1\nimages:\n  app:\n    image: {path}\n"
        "    context: ctx\n    dockerfile: ctx/Dockerfile\n"
        "localRegistry:\n  localbuild: false\n"
    )
    loaded = load_project(tmp_path / "devspace.yaml")
    config, diagnostics = loaded.config, loaded.diagnostics
    assert config is not None, diagnostics
    state = StateDir(tmp_path)
    state.ensure()
    lines, log = collect()
    pipeline = Pipeline(
        config,
        routes={"app": Route("app", "local-registry", f"{testenv.registry}/{path}", "in-cluster")},
        endpoint=LoopbackEndpoint(testenv.registry),
        engine=None,  # localbuild: false needs no Docker engine
        backend=None,
        in_cluster=backend,
        state=state,
        log=log,
    )
    index = ContextIndex(ctx, dockerfile)
    index.scan()
    first = pipeline.run("app", index.snapshot(), cancel=threading.Event())
    assert first.state == "built", first
    assert first.tag is not None and first.tag in tags(testenv.registry, path)
    assert not any(line.startswith("pushing ") for line in lines)  # the backend pushed
    second = pipeline.run("app", index.snapshot(), cancel=threading.Event())
    assert second.state == "up-to-date"
    assert second.tag == first.tag
    assert run_image(docker_client, f"{testenv.registry}/{path}:{first.tag}") == "pipeline"


def test_same_second_same_size_edit_is_not_stale(
    backend: BuildkitBackend,
    testenv: TestEnv,
    docker_client: Any,
    static_busybox: Path,
    tmp_path: Path,
) -> None:
    """buildkitd skips a context file whose size and mtime match its cached
    copy, and the sidecar's tar keeps whole seconds: an edit within the same
    second must still reach the image (context.MtimeLedger)."""
    ctx, dockerfile = project(
        tmp_path,
        static_busybox,
        BASE + 'COPY msg /msg\nCMD ["cat", "/msg"]\n',
        files={"msg": "AAAA\n"},
    )
    msg = ctx / "msg"
    os.utime(msg, ns=(1_700_000_000_100_000_000,) * 2)
    first = request(ctx, dockerfile)
    backend.build(first, log=lambda _: None, cancel=threading.Event())
    msg.write_text("BBBB\n")
    os.utime(msg, ns=(1_700_000_000_900_000_000,) * 2)
    second = request(ctx, dockerfile, repository=first.repository)
    backend.build(second, log=lambda _: None, cancel=threading.Event())
    assert (
        run_image(docker_client, push_name(testenv.registry, first.repository, first.tag)) == "AAAA"
    )
    assert (
        run_image(docker_client, push_name(testenv.registry, second.repository, second.tag))
        == "BBBB"
    )


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("removed", id="work-directory-removed"),  # the pod was replaced
        pytest.param("token", id="token-changed"),  # another devreg wrote to it
    ],
)
def test_work_directory_not_as_left_gets_everything(
    backend: BuildkitBackend,
    testenv: TestEnv,
    docker_client: Any,
    static_busybox: Path,
    tmp_path: Path,
    damage: str,
) -> None:
    ctx, dockerfile = project(
        tmp_path,
        static_busybox,
        BASE + 'COPY msg /msg\nCMD ["cat", "/msg"]\n',
        files={"msg": "one\n"},
    )
    backend.build(request(ctx, dockerfile), log=lambda _: None, cancel=threading.Event())
    workdir = Path(backend.transport.workroot) / workdir_name(request(ctx, dockerfile))
    assert (workdir / "context" / "msg").read_text() == "one\n"
    if damage == "removed":
        shutil.rmtree(workdir)
    else:
        (workdir / ".devreg-token").write_text("someone else\n")
    (ctx / "msg").write_text("two, longer\n")
    lines, log = collect()
    req = request(ctx, dockerfile)
    backend.build(req, log=log, cancel=threading.Event())
    assert lines[0].startswith("sending changes: 1 of 4 files")
    assert "the work directory in buildkitd is not as devreg left it: sending all" in lines
    assert any(line.startswith("sending all: 4 of 4 files") for line in lines)
    reference = push_name(testenv.registry, req.repository, req.tag)
    assert run_image(docker_client, reference) == "two, longer"
