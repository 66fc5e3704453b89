"""The transports. ``ExecTransport`` runs against :mod:`fake_kubelet`: the
real ``kubernetes`` client and its WebSocket stream on our side, a loopback
stand-in for the API server and kubelet on the other, because no kubelet (so
no exec into a real pod) exists here. This is the narrowest boundary we can
test; exec into a real registry pod is listed as not verified in the README
and docs/buildkit.md.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookpkg.errors import FatalError
from tests.plugins.testenv import TestEnv
from tests.watcher.build.buildkit import fake_kubelet
from tests.watcher.build.buildkit.backend_test import BASE, project, request, tags, wait_for
from watcher import proc
from watcher.build.backends import BuildCancelled, BuildError
from watcher.build.buildkit.backend import BuildkitBackend, build_script, workdir_name
from watcher.build.buildkit.context import pack
from watcher.build.buildkit.transport import ExecTransport, LocalTransport, exit_code

USERLANDS = [
    pytest.param("debian", id="debian-userland"),
    # The sidecar image is Alpine: its sh, tar, kill, setsid are busybox applets.
    pytest.param("busybox", id="busybox-userland"),
]


def _env(userland: str, tmp_path: Path, extra_path: str = "") -> dict[str, str]:
    path = os.environ.get("PATH", "/usr/bin:/bin")
    if userland == "busybox":
        path = fake_kubelet.busybox_userland(str(tmp_path / "bb")) + ":" + path
    if extra_path:
        path = extra_path + ":" + path
    return {"PATH": path, "HOME": "/root"}


def core_api(host: str) -> Any:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = host
    return client.CoreV1Api(client.ApiClient(configuration))


@pytest.fixture(params=USERLANDS)
def exec_env(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ExecTransport, fake_kubelet.FakeKubelet]]:
    kubelet = fake_kubelet.FakeKubelet(
        pods=[
            fake_kubelet.pod("registry-old", created="2026-01-01T00:00:00Z"),
            fake_kubelet.pod("registry-new", created="2026-01-02T00:00:00Z"),
            fake_kubelet.pod("registry-unready", ready=False, created="2026-01-03T00:00:00Z"),
            fake_kubelet.pod(
                "registry-nobk", containers=("registry",), created="2026-01-04T00:00:00Z"
            ),
        ],
        env=_env(request.param, tmp_path),
    )
    gen = fake_kubelet.serve(kubelet)
    next(gen)
    workroot = tmp_path / "podtmp"
    workroot.mkdir()
    transport = ExecTransport(
        core_api(kubelet.host), namespace="devreg", selector="app=registry", workroot=str(workroot)
    )
    try:
        yield transport, kubelet
    finally:
        transport.api.api_client.close()
        next(gen, None)


def test_exec_stdin_output_and_exit_code(
    exec_env: tuple[ExecTransport, fake_kubelet.FakeKubelet],
) -> None:
    transport, kubelet = exec_env
    payload = os.urandom(3 * (1 << 20) + 17)  # several stdin frames
    lines: list[str] = []
    done = transport.run(
        ("sh", "-c", "wc -c; echo 'to stderr' >&2; exit 3"), stdin=payload, log=lines.append
    )
    assert done.returncode == 3
    assert not done.cancelled
    # stdout and stderr are separate channels: their relative order is not kept.
    assert sorted(line.strip() for line in lines) == sorted([str(len(payload)), "to stderr"])
    ex = kubelet.execs[0]
    # The newest Ready pod with the buildkitd container, and that container.
    assert (ex.namespace, ex.pod, ex.container) == ("devreg", "registry-new", "buildkitd")
    assert ex.protocol == fake_kubelet.V5 and ex.stdin_closed_by_client
    # The pid file of the wrapper is gone.
    assert list(Path(transport.workroot).iterdir()) == []


def test_exec_success_without_stdin(
    exec_env: tuple[ExecTransport, fake_kubelet.FakeKubelet],
) -> None:
    transport, kubelet = exec_env
    lines: list[str] = []
    done = transport.run(("echo", "hello", "world"), log=lines.append)
    assert done.ok
    assert lines == ["hello world"]
    assert kubelet.execs[0].stdin is False


def test_exec_missing_program(exec_env: tuple[ExecTransport, fake_kubelet.FakeKubelet]) -> None:
    transport, _ = exec_env
    done = transport.run(("devreg-no-such-program",))
    assert done.returncode == 127


def test_exec_cancel_stops_the_process_in_the_container(
    exec_env: tuple[ExecTransport, fake_kubelet.FakeKubelet],
) -> None:
    transport, kubelet = exec_env
    marker = str(2000 + uuid.uuid4().int % 1000)
    cancel = threading.Event()
    started = threading.Event()
    result: list[proc.Completed] = []

    def log(line: str) -> None:
        if line == "started":
            started.set()

    thread = threading.Thread(
        target=lambda: result.append(
            transport.run(
                ("sh", "-c", f"echo started; sleep {marker}; echo not reached"),
                log=log,
                cancel=cancel,
            )
        )
    )
    thread.start()
    try:
        assert started.wait(20)
        t0 = time.monotonic()
        cancel.set()
        thread.join(20)
        assert not thread.is_alive()
        assert time.monotonic() - t0 < 10
    finally:
        cancel.set()
        thread.join()
    done = result[0]
    assert done.cancelled is True
    # Closing the stream alone would leave it running (as in a real
    # container): the second exec stopped it.
    assert any(
        ex.command[:2] == ["sh", "-c"] and "kill -TERM" in ex.command[2] for ex in kubelet.execs
    )
    first = kubelet.processes[0]
    wait_for(lambda: first.poll() is not None, 10, "the exec'd process to end")
    wait_for(lambda: not _alive_with(f"sleep {marker}"), 10, "the sleep to end")


def _alive_with(text: str) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if (
                    text
                    in Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                ):
                    return True
            except OSError:
                continue
    return False


def test_v4_protocol_without_stdin_close_still_unpacks(tmp_path: Path) -> None:
    """With v4.channel.k8s.io stdin cannot be half-closed; the build script
    bounds tar's input with ``head -c <size>`` instead (tar itself reads
    on past the archive's end marker, waiting for EOF)."""
    kubelet = fake_kubelet.FakeKubelet(
        pods=[fake_kubelet.pod("registry-0")],
        env=_env("busybox", tmp_path),
        protocols=(fake_kubelet.V4,),
    )
    gen = fake_kubelet.serve(kubelet)
    next(gen)
    try:
        transport = ExecTransport(
            core_api(kubelet.host), namespace="devreg", selector="app=registry"
        )
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "f.txt").write_text("x")
        dockerfile = ctx / "Dockerfile"
        dockerfile.write_text("FROM scratch\n")
        out = tmp_path / "out"
        lines: list[str] = []
        data = pack(ctx, ("Dockerfile", "f.txt"), dockerfile).data
        done = transport.run(
            build_script(str(out), len(data), ("ls", f"{out}/context"), leave="t1"),
            stdin=data,
            log=lines.append,
        )
        assert done.ok, done.tail
        assert lines == ["devreg: context unpacked", "Dockerfile", "f.txt"]
        assert kubelet.execs[0].protocol == fake_kubelet.V4
        assert not kubelet.execs[0].stdin_closed_by_client
        transport.api.api_client.close()
    finally:
        next(gen, None)


def test_no_ready_buildkitd_pod_says_what_to_do(tmp_path: Path) -> None:
    kubelet = fake_kubelet.FakeKubelet(
        pods=[
            fake_kubelet.pod("registry-0", containers=("registry",)),
            fake_kubelet.pod("registry-1", ready=False),
        ],
    )
    gen = fake_kubelet.serve(kubelet)
    next(gen)
    try:
        transport = ExecTransport(
            core_api(kubelet.host), namespace="devreg", selector="app=registry"
        )
        with pytest.raises(
            FatalError,
            match=r"no Ready registry pod with a 'buildkitd' container \(label app=registry\) in namespace 'devreg'",
        ):
            transport.run(("true",))
        transport.api.api_client.close()
    finally:
        next(gen, None)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(b'{"metadata":{},"status":"Success"}', (0, None), id="success"),
        pytest.param(
            b'{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"42"}]}}',
            (42, None),
            id="exit-code",
        ),
        pytest.param(
            b'{"status":"Failure","message":"container not found (\\"buildkitd\\")"}',
            (255, 'container not found ("buildkitd")'),
            id="no-container",
        ),
        pytest.param(b"", (255, "the exec stream closed without an exit status"), id="cut-off"),
        pytest.param(b"not json", (255, "not json"), id="garbage"),
    ],
)
def test_exit_code(status: bytes, expected: tuple[int, str | None]) -> None:
    assert exit_code(status) == expected


def test_local_transport_runs_here(tmp_path: Path) -> None:
    lines: list[str] = []
    done = LocalTransport(workroot=str(tmp_path)).run(
        ("sh", "-c", "cat; exit 4"), stdin=b"a\nb", log=lines.append
    )
    assert (done.returncode, lines) == (4, ["a", "b"])


@pytest.mark.parametrize("userland", USERLANDS)
def test_build_through_the_exec_framing(
    userland: str, buildkitd: str, buildkit_bin: Path, testenv: TestEnv, tmp_path: Path
) -> None:
    """The whole in-cluster build path with the exec transport: the context
    goes as stdin frames of the real client's stream, the fake kubelet runs
    ``sh``/``tar``/``buildctl`` against the real buildkitd, which pushes to
    the real registry."""
    kubelet = fake_kubelet.FakeKubelet(
        pods=[fake_kubelet.pod("registry-0")],
        env={**_env(userland, tmp_path, str(buildkit_bin)), "BUILDKIT_HOST": buildkitd},
    )
    gen = fake_kubelet.serve(kubelet)
    next(gen)
    try:
        workroot = tmp_path / "podtmp"
        workroot.mkdir()
        transport = ExecTransport(
            core_api(kubelet.host),
            namespace="devreg",
            selector="app=registry",
            workroot=str(workroot),
        )
        # addr=None: buildctl finds buildkitd through $BUILDKIT_HOST, as in the sidecar image.
        backend = BuildkitBackend(transport, push_host=testenv.registry)
        ctx, dockerfile = project(
            tmp_path, Path("/bin/busybox"), BASE + 'CMD ["echo", "via exec"]\n'
        )
        req = request(ctx, dockerfile)
        lines: list[str] = []
        result = backend.build(req, log=lines.append, cancel=threading.Event())
        assert result.pushed and result.image_id
        assert req.tag in tags(testenv.registry, req.repository.split("/", 1)[1])
        # The image's work directory stays (only changes travel next time);
        # the exec wrapper's pid file is gone.
        assert [p.name for p in workroot.iterdir()] == [workdir_name(req)]
        # One exec: unpack and build (a round trip per build, no more).
        assert [ex.stdin for ex in kubelet.execs] == [True]
        # Changing the Dockerfile (in the context, and beside it) sends those two.
        (ctx / "Dockerfile").write_text(BASE + 'CMD ["echo", "via exec, again"]\n')
        lines.clear()
        backend.build(request(ctx, dockerfile), log=lines.append, cancel=threading.Event())
        assert any(line.startswith("sending changes: 2 of 3 files") for line in lines), lines

        failing, fdf = project(tmp_path / "f", Path("/bin/busybox"), BASE + "RUN exit 5\n")
        with pytest.raises(BuildError) as info:
            backend.build(request(failing, fdf), log=lambda _: None, cancel=threading.Event())
        assert "exit code: 5" in str(info.value)
        assert info.value.tail[-1].startswith("error: failed to solve")

        marker = str(3000 + uuid.uuid4().int % 1000)
        slow, sdf = project(
            tmp_path / "s", Path("/bin/busybox"), BASE + f"RUN echo started; sleep {marker}\n"
        )
        cancel = threading.Event()
        outcome: list[BaseException] = []

        def log(line: str) -> None:
            if line.strip() == "started":
                cancel.set()

        def target() -> None:
            try:
                backend.build(request(slow, sdf), log=log, cancel=cancel)
            except BaseException as e:  # noqa: BLE001
                outcome.append(e)

        thread = threading.Thread(target=target)
        thread.start()
        thread.join(60)
        assert not thread.is_alive()
        assert outcome and isinstance(outcome[0], BuildCancelled)
        wait_for(lambda: not _alive_with(f"sleep {marker}"), 20, "the RUN step to stop")
        assert not [p for p in workroot.iterdir() if p.name.endswith(".pid")]
        transport.api.api_client.close()
    finally:
        next(gen, None)


def test_exec_against_the_real_api_server(kube_api_client: Any) -> None:
    """The pod lookup and the exec request against the real kube-apiserver of
    the test environment, for a pod on a node whose kubelet cannot be reached:
    the pod asks for one of kwok's tainted nodes, kwok makes it Ready, the API
    server accepts the exec websocket (v5 channels, the real framing) but no
    kubelet serves exec, so its Status on the error channel says it could not
    reach the node; devreg reports which pod and container, without the kubelet
    URL's query."""
    from kubernetes import client

    core = client.CoreV1Api(kube_api_client)
    namespace = f"devreg-bk-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        pod = {
            "metadata": {"name": "registry-abc", "labels": {"app": "registry"}},
            "spec": {
                "nodeSelector": {"type": "kwok"},
                "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                "containers": [
                    {"name": "registry", "image": "registry:2.8.1"},
                    {"name": "buildkitd", "image": "moby/buildkit:master-rootless"},
                ],
            },
        }
        core.create_namespaced_pod(namespace, pod)
        transport = ExecTransport(core, namespace=namespace, selector="app=registry")

        def found() -> bool:
            try:
                return transport.pod(refresh=True) == "registry-abc"
            except FatalError:
                return False

        wait_for(found, 60, "kwok to make the registry pod Ready")
        with pytest.raises(
            FatalError,
            match=r"cannot exec into pod devreg-bk-\w+/registry-abc \(container 'buildkitd'\): "
            r".*(error dialing backend|error sending request|connection refused)",
        ) as info:
            transport.run(("true",))
        assert "command=" not in str(info.value)
        missing = ExecTransport(core, namespace=namespace, selector="app=nothing")
        with pytest.raises(FatalError, match="no Ready registry pod"):
            missing.run(("true",))
    finally:
        core.delete_namespace(namespace)
