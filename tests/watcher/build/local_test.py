"""Building with the local Docker engine: the build command and its
environment, which Docker CLI is chosen, how a push is followed, and the
backend against the test environment's real engine and registry."""

from __future__ import annotations

import os
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookpkg.config import Image
from hookpkg.errors import FatalError
from tests.watcher.e2e import processes_mentioning, registry_tags
from watcher.build.backends import BuildCancelled, BuildError, BuildRequest
from watcher.build.contenttag import ContextIndex
from watcher.build.local import (
    DockerCli,
    Engine,
    LocalDockerBackend,
    _follow_push,
    build_argv,
    build_env,
    buildkit_cli,
    choose_cli,
)


def _request(
    ctx: Path,
    *,
    repository: str = "localhost:31234/devreg-local/app",
    tag: str | None = None,
    build_args: dict[str, str] | None = None,
    target: str | None = None,
    dockerfile: Path | None = None,
) -> BuildRequest:
    dockerfile = dockerfile or ctx / "Dockerfile"
    args = build_args or {}
    index = ContextIndex(ctx, dockerfile)
    index.scan()
    image = Image(
        "app", repository, (), dockerfile, ctx, args, target, "docker", "devspace.yaml", 1, 1
    )
    return BuildRequest(
        image=image,
        repository=repository,
        tag=tag or uuid.uuid4().hex[:12],
        context=ctx,
        files=index.files(),
        dockerfile=dockerfile,
        build_args=args,
        target=target,
    )


# --- the command -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cli", "args", "target", "expected"),
    [
        pytest.param(
            DockerCli("/usr/bin/docker", False, "20.10"),
            {},
            None,
            ("/usr/bin/docker", "build", "--progress=plain"),
            id="buildkit-built-in",
        ),
        pytest.param(
            DockerCli("/opt/docker", True, "27.1"),
            {},
            None,
            ("/opt/docker", "buildx", "build", "--load", "--progress=plain"),
            id="buildx-loads-into-the-engine",
        ),
        pytest.param(
            DockerCli("docker", False, "20.10"),
            {"B": "2", "A": "x=y"},
            "dev",
            (
                "docker",
                "build",
                "--progress=plain",
                "--build-arg",
                "A=x=y",
                "--build-arg",
                "B=2",
                "--target",
                "dev",
            ),
            id="args-sorted-and-target",
        ),
    ],
)
def test_build_argv(
    tmp_path: Path,
    cli: DockerCli,
    args: dict[str, str],
    target: str | None,
    expected: tuple[str, ...],
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    request = _request(tmp_path, tag="t1", build_args=args, target=target)
    argv = build_argv(cli, request, iidfile=Path("/tmp/iid"))
    fixed = (
        "--file",
        str(tmp_path / "Dockerfile"),
        "--tag",
        "localhost:31234/devreg-local/app:t1",
        "--iidfile",
        "/tmp/iid",
    )
    head = expected[: expected.index("--progress=plain") + 1]
    assert argv[: len(head)] == head
    assert argv[len(head) : len(head) + len(fixed)] == fixed
    assert argv[len(head) + len(fixed) : -1] == expected[len(head) :]
    assert argv[-1] == str(tmp_path)  # the context comes last


@pytest.mark.parametrize(
    ("base", "progress"),
    [
        pytest.param({"PATH": "/bin"}, "plain", id="plain-progress-by-default"),
        pytest.param({"BUILDKIT_PROGRESS": "tty"}, "tty", id="the-users-choice-stays"),
        pytest.param({"DOCKER_BUILDKIT": "0"}, "plain", id="buildkit-always-on"),
    ],
)
def test_build_env(base: dict[str, str], progress: str) -> None:
    before = dict(base)
    env = build_env(base)
    assert env["DOCKER_BUILDKIT"] == "1"
    assert env["BUILDKIT_PROGRESS"] == progress
    assert all(env[k] == v for k, v in base.items() if k != "DOCKER_BUILDKIT")
    assert base == before  # the caller's mapping is left alone


# --- which CLI ---------------------------------------------------------------------------


def _fake_docker(path: Path, version: str | None, buildx: bool) -> Path:
    """A stand-in ``docker`` that answers ``--version`` and ``buildx version``:
    the choice depends on versions and plugins that cannot be installed side by
    side here (the real CLI is chosen by the tests against the engine below)."""
    version_line = f'echo "Docker version {version}, build 0000000"' if version else "exit 1"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then {version_line}; exit 0; fi\n'
        f'if [ "$1" = buildx ]; then exit {0 if buildx else 1}; fi\n'
        "exit 2\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize(
    ("version", "buildx", "expected"),
    [
        pytest.param("20.10.24+dfsg1", False, (False, "20.10"), id="old-cli-buildkit-built-in"),
        pytest.param("27.3.1", True, (True, "27.3"), id="new-cli-with-buildx"),
        pytest.param("22.06.0", True, (True, "22.6"), id="buildx-preferred"),
        pytest.param("18.09.1", False, (False, "18.9"), id="first-with-buildkit"),
    ],
)
def test_cli_choice(tmp_path: Path, version: str, buildx: bool, expected: tuple[bool, str]) -> None:
    """``docker`` on PATH, as the user has it."""
    docker = _fake_docker(tmp_path / "docker", version, buildx)
    assert buildkit_cli({"PATH": str(tmp_path)}) == DockerCli(str(docker), *expected)


@pytest.mark.parametrize(
    ("version", "buildx", "says"),
    [
        pytest.param(
            "27.3.1",
            False,
            "cannot run BuildKit builds: it has no buildx plugin (`docker buildx version` "
            "fails), and since Docker 23.0 `docker build` runs BuildKit only through buildx. "
            "To fix it, install the buildx plugin (docker-buildx-plugin from Docker's "
            "packages, docker-buildx on Debian and Ubuntu), or set DEVREG_DOCKER to a Docker "
            "CLI that can",
            id="new-cli-without-buildx",
        ),
        pytest.param(
            "17.12.0",
            False,
            "cannot run BuildKit builds: it is older than 18.9, which brought BuildKit. To fix "
            "it, upgrade it, or set DEVREG_DOCKER to a Docker CLI that can",
            id="too-old",
        ),
        pytest.param(
            None,
            True,
            "is not a Docker CLI: `{docker} --version` did not print 'Docker version X.Y'; "
            "set DEVREG_DOCKER to a Docker CLI",
            id="no-version",
        ),
    ],
)
def test_a_cli_that_cannot_is_an_error_naming_what_is_missing(
    tmp_path: Path, version: str | None, buildx: bool, says: str
) -> None:
    docker = _fake_docker(tmp_path / "docker", version, buildx)
    with pytest.raises(FatalError) as e:
        buildkit_cli({"PATH": str(tmp_path)})
    assert says.format(docker=docker) in str(e.value)
    assert f"{docker} " in str(e.value) and "`docker` on PATH" in str(e.value)
    assert e.value.exit_code == 1


def test_devreg_docker_overrides_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    chosen = _fake_docker(tmp_path / "a" / "docker", "24.0.7", True)
    _fake_docker(tmp_path / "b" / "docker", "20.10.5", False)
    env = {"DEVREG_DOCKER": str(chosen), "PATH": str(tmp_path / "b")}
    assert buildkit_cli(env) == DockerCli(str(chosen), True, "24.0")
    # A name is looked up on PATH, as a command would be.
    _fake_docker(tmp_path / "b" / "docker-24", "24.0.7", True)
    env = {"DEVREG_DOCKER": "docker-24", "PATH": str(tmp_path / "b")}
    assert buildkit_cli(env) == DockerCli(str(tmp_path / "b" / "docker-24"), True, "24.0")
    # The override is not second-guessed: one that cannot is the error, PATH is not tried.
    _fake_docker(chosen, "25.0.0", False)
    env = {"DEVREG_DOCKER": str(chosen), "PATH": str(tmp_path / "b")}
    with pytest.raises(FatalError, match=f"DEVREG_DOCKER={chosen}.*no buildx plugin"):
        buildkit_cli(env)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        pytest.param(
            {"PATH": "/nowhere"},
            "no Docker CLI: `docker` on PATH is missing. devreg builds images with the Docker "
            "CLI and BuildKit: install Docker's CLI (with the buildx plugin), or set "
            "DEVREG_DOCKER to one",
            id="no-docker",
        ),
        pytest.param(
            {"PATH": "/nowhere", "DEVREG_DOCKER": "/nowhere/docker"},
            "no Docker CLI: DEVREG_DOCKER=/nowhere/docker is not an executable.",
            id="override-missing",
        ),
    ],
)
def test_no_cli(env: dict[str, str], says: str) -> None:
    with pytest.raises(FatalError) as e:
        buildkit_cli(env)
    assert says in str(e.value)


def test_choose_cli_is_pure() -> None:
    assert choose_cli("/x/docker", (23, 0), has_buildx=True) == DockerCli("/x/docker", True, "23.0")
    assert choose_cli("/x/docker", (22, 6), has_buildx=False).buildx is False
    with pytest.raises(FatalError, match=r"/x/docker \(23.0, `docker` on PATH\)"):
        choose_cli("/x/docker", (23, 0), has_buildx=False)


# --- following a push --------------------------------------------------------------------

# The engine's push stream (``docker push`` JSON lines), trimmed.
PUSH = [
    {"status": "The push refers to repository [localhost:5000/app]"},
    {"status": "Preparing", "progressDetail": {}, "id": "a1"},
    {"status": "Preparing", "progressDetail": {}, "id": "b2"},
    {"status": "Layer already exists", "progressDetail": {}, "id": "b2"},
    {"status": "Pushing", "progressDetail": {"current": 512, "total": 3_000_000}, "id": "a1"},
    {"status": "Pushing", "progressDetail": {"current": 1024, "total": 3_000_000}, "id": "a1"},
    {"status": "Pushed", "progressDetail": {}, "id": "a1"},
    {"status": "t1: digest: sha256:abc size: 739"},
    {"progressDetail": {}, "aux": {"Tag": "t1", "Digest": "sha256:abc", "Size": 739}},
]


def test_a_push_is_one_line_per_layer_state() -> None:
    lines: list[str] = []
    sent = _follow_push(iter(PUSH), log=lines.append, cancel=threading.Event())
    assert sent == 1  # b2 was there already
    assert lines == [
        "The push refers to repository [localhost:5000/app]",
        "layer a1: preparing",
        "layer b2: preparing",
        "layer b2: layer already exists",
        "layer a1: pushing 0.0 MB/3.0 MB",  # progress at most once a second per layer
        "layer a1: pushed",
        "t1: digest: sha256:abc size: 739",
    ]


def test_a_push_error_and_a_cancel() -> None:
    closed: list[bool] = []

    class Stream:
        def __init__(self, chunks: list[dict[str, Any]]) -> None:
            self._it = iter(chunks)

        def __iter__(self) -> Iterator[dict[str, Any]]:
            return self._it

        def close(self) -> None:
            closed.append(True)

    failing = [*PUSH[:3], {"errorDetail": {"message": "denied"}, "error": "denied: no"}]
    with pytest.raises(BuildError, match="push failed: denied: no"):
        _follow_push(Stream(failing), log=lambda _: None, cancel=threading.Event())
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(BuildCancelled):
        _follow_push(Stream(PUSH), log=lambda _: None, cancel=cancel)
    assert closed == [True, True]  # the HTTP stream is released either way


# --- with the real engine ----------------------------------------------------------------


@pytest.fixture
def engine(testenv: Any) -> Iterator[Engine]:
    engine = Engine()
    engine.ping()
    yield engine
    engine.close()


@pytest.fixture
def cli(testenv: Any) -> DockerCli:
    # The test environment's CLI: DEVREG_DOCKER, as scripts/testenv exports it.
    return buildkit_cli({"DEVREG_DOCKER": testenv.docker_cli, "PATH": os.environ["PATH"]})


def test_builds_with_buildkit_and_pushes(
    testenv: Any, engine: Engine, cli: DockerCli, tmp_path: Path
) -> None:
    (tmp_path / "app.sh").write_text(f"echo {uuid.uuid4().hex}\n")  # a layer new to the registry
    (tmp_path / "Dockerfile").write_text(
        f"FROM {testenv.base_image}\nARG WORD\nCOPY app.sh /app.sh\n"
        "RUN --mount=type=cache,target=/cache echo $WORD > /cache/w && cp /cache/w /word\n"
    )
    repository = f"{testenv.registry}/devreg-local/app"
    request = _request(tmp_path, repository=repository, build_args={"WORD": "hi"})
    lines: list[str] = []
    result = LocalDockerBackend(engine, cli).build(
        request, log=lines.append, cancel=threading.Event()
    )
    assert result.reference == request.reference and not result.pushed
    assert result.image_id is not None
    assert engine.image_id(request.reference) == result.image_id
    assert any("RUN --mount=type=cache" in line for line in lines)  # BuildKit's plain progress
    assert not engine.remote_has(request.reference)
    pushed: list[str] = []
    assert engine.push(repository, request.tag, log=pushed.append, cancel=threading.Event()) > 0
    assert request.tag in registry_tags(testenv.registry, "devreg-local/app")
    assert engine.remote_has(request.reference)
    # The same layers again: nothing to send.
    engine.tag(request.reference, repository, "again")
    assert engine.push(repository, "again", log=pushed.append, cancel=threading.Event()) == 0


def test_a_failing_build_names_the_image_and_keeps_the_log_tail(
    testenv: Any, engine: Engine, cli: DockerCli, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {testenv.base_image}\nRUN echo the-reason >&2 && exit 7\n"
    )
    with pytest.raises(BuildError, match=r"docker build failed \(exit 1\) for image 'app'") as e:
        LocalDockerBackend(engine, cli).build(
            _request(tmp_path), log=lambda _: None, cancel=threading.Event()
        )
    assert any("the-reason" in line for line in e.value.tail)
    assert e.value.exit_code == 1


def test_a_cancelled_build_stops_at_once(
    testenv: Any, engine: Engine, cli: DockerCli, tmp_path: Path
) -> None:
    marker = f"devreg-cancel-{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {testenv.base_image}\nRUN echo {marker} && sleep 60\n"
    )
    cancel = threading.Event()

    def log(line: str) -> None:
        if marker in line and "RUN" not in line:
            cancel.set()  # the RUN step is running

    started = time.monotonic()
    with pytest.raises(BuildCancelled):
        LocalDockerBackend(engine, cli).build(_request(tmp_path), log=log, cancel=cancel)
    assert time.monotonic() - started < 30
    assert processes_mentioning(str(tmp_path)) == []  # no docker build left running


def test_an_engine_that_does_not_answer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An expected error that says what to check, not a traceback (exit 1, not 3)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(
        FatalError, match="the Docker engine does not answer .*dockerd running"
    ) as e:
        Engine(timeout=2)
    assert e.value.exit_code == 1
