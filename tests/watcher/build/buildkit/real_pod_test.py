"""``localbuild: false`` on the real path, no stand-in: ``devreg up`` deploys the registry
pod with its ``buildkitd`` container (the test environment's rootless BuildKit image,
``DEVREG_TEST_BUILDKIT_IMAGE``) and a real kubelet runs both on a real node; ``devreg
build`` with no reachable Docker engine sends the context through the Kubernetes API's
exec stream and the real kubelet's exec into that container, buildkitd builds and pushes
to the registry beside it, and a pod on each real node pulls the image through its own
loopback and runs it. An edit under ``devreg watch`` sends only the changed file and the
new tag runs on each node.

The exec transport's own behaviour is checked against the same pod: stdin in several
frames, stdout/stderr and exit codes through the real channels, a missing program, and
a cancel that stops the process in the container (closing the stream alone would not).
The pod lookup runs against the real API server with kwok's pods (Ready or not, with or
without a ``buildkitd`` container) beside the real one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from hookpkg.errors import FatalError
from tests.plugins.testenv import RealNode, TestEnv
from tests.watcher.e2e import devreg, wait_for
from tests.watcher.real_nodes_test import dotenv, run_on_each_node
from watcher import proc
from watcher.build.backends import BuildCancelled, BuildError
from watcher.build.buildkit.backend import in_cluster_backend
from watcher.build.buildkit.transport import ExecTransport

pytestmark = [pytest.mark.testenv, pytest.mark.slow]

REGISTRY_PORT = 5000
# No base image can be pulled (nothing leaves these machines, and buildkitd does not
# use the nodes' images): the project's base is Debian's static busybox from the
# context. The cache mount is BuildKit-only syntax, as in examples/hello.
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
WORKDIR /app
COPY src/ /app/
RUN --mount=type=cache,target=/cache cp /app/hello.sh /cache/last && chmod +x /app/hello.sh
CMD ["/app/hello.sh"]
"""


@dataclass(frozen=True)
class Deployed:
    namespace: str
    project: Path
    pod: Any  # V1Pod, as devreg up left it
    node_port: int
    no_engine: dict[str, str]  # the environment devreg runs with: DOCKER_HOST answers nothing


def set_marker(project: Path, marker: str) -> None:
    (project / "src" / "hello.sh").write_text(f'#!/bin/sh\necho "content {marker}"\n')


def make_project(root: Path, buildkit_image: str) -> Path:
    project = root / "inpod"
    (project / "src").mkdir(parents=True)
    (project / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (project / "busybox").chmod(0o755)
    (project / "Dockerfile").write_text(DOCKERFILE)
    (project / ".dockerignore").write_text(".devreg\n.devreg.env\ndevspace.yaml\n")
    for i in range(20):
        (project / "src" / f"data{i:02d}.txt").write_text(f"file {i}\n" * 50)
    set_marker(project, "v1")
    (project / "devspace.yaml").write_text(
        "version: v2beta1\nname: inpod\n"
        "localRegistry:\n  enabled: true\n  localbuild: false\n"
        f"  buildKitImage: {buildkit_image}\n"
        f"images:\n  app:\n    image: ghcr.io/example/inpod-{uuid.uuid4().hex[:8]}\n"
    )
    return project


def new_values(project: Path, old: dict[str, str]) -> dict[str, str] | None:
    """``.devreg.env`` once its tag differs from ``old``'s."""
    values = dotenv(project)
    return values if values["RUNTIME_IMAGES_APP_TAG"] != old["RUNTIME_IMAGES_APP_TAG"] else None


@pytest.fixture(scope="module")
def core(kube_api_client: Any) -> Any:
    return client.CoreV1Api(kube_api_client)


@pytest.fixture(scope="module")
def deployed(
    testenv: TestEnv,
    real_nodes: list[RealNode],
    buildkit_image: str,
    core: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployed]:
    """``devreg up`` with ``localbuild: false`` and no Docker engine: the registry pod,
    both containers Ready on a real node."""
    root = tmp_path_factory.mktemp("inpod")
    project = make_project(root, buildkit_image)
    namespace = f"inpod-{uuid.uuid4().hex[:8]}"
    no_engine = {"DOCKER_HOST": f"unix://{root}/no-docker-here.sock"}
    try:
        up = devreg("up", "--namespace", namespace, "--format", "json", cwd=project, env=no_engine)
        node_port = int(json.loads(up.stdout)["node_port"])
        pods = core.list_namespaced_pod(namespace, label_selector="app=registry").items
        assert len(pods) == 1
        yield Deployed(namespace, project, pods[0], node_port, no_engine)
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(namespace, grace_period_seconds=0)


def test_up_runs_buildkitd_ready_on_a_real_node(
    deployed: Deployed, real_nodes: list[RealNode], buildkit_image: str
) -> None:
    pod = deployed.pod
    assert pod.spec.node_name in {n.name for n in real_nodes}
    assert pod.status.phase == "Running"
    assert pod.status.pod_ip.startswith("10.244.")
    statuses = {c.name: c for c in pod.status.container_statuses}
    assert set(statuses) == {"registry", "buildkitd"}
    # Ready: the kubelet ran the readiness probe `buildctl debug workers` in it.
    assert all(c.ready and c.state.running for c in statuses.values())
    assert statuses["buildkitd"].restart_count == 0
    spec = next(c for c in pod.spec.containers if c.name == "buildkitd")
    assert spec.image == buildkit_image
    assert spec.args == ["--oci-worker-no-process-sandbox"]
    ctx = spec.security_context
    assert (ctx.run_as_user, ctx.run_as_group, ctx.seccomp_profile.type) == (
        1000,
        1000,
        "Unconfined",
    )
    assert not ctx.privileged and not ctx.capabilities  # rootless: nothing added


def test_build_in_the_pod_without_an_engine_runs_on_each_node(
    deployed: Deployed, real_nodes: list[RealNode], core: Any
) -> None:
    project, namespace = deployed.project, deployed.namespace
    built = devreg("build", "--namespace", namespace, cwd=project, env=deployed.no_engine)
    out = built.stdout + built.stderr
    assert "building in the cluster: buildkitd of" in out, out
    assert "sending all:" in out and "(exec)" in out, out
    assert "RUN --mount=type=cache" in out, out  # buildkitd's progress, read back
    first = dotenv(project)
    image = first["RUNTIME_IMAGES_APP"]
    assert image.startswith(f"localhost:{deployed.node_port}/example/inpod-")
    assert run_on_each_node(core, namespace, image, real_nodes) == {
        n.name: "content v1" for n in real_nodes
    }
    # The same inputs again: the tag is in the registry, nothing is built.
    again = devreg("build", "--namespace", namespace, cwd=project, env=deployed.no_engine)
    assert "sending" not in again.stdout + again.stderr
    assert dotenv(project) == first

    # An edit under the watcher: one process remembers what the pod's work directory
    # holds, so only the changed file travels; the new tag runs on each node.
    devreg("watch", "--detach", "--namespace", namespace, cwd=project, env=deployed.no_engine)
    try:
        log = project / ".devreg" / "watch.log"
        set_marker(project, "v2")
        second = wait_for(lambda: new_values(project, first), timeout=120, what="a new tag")
        set_marker(project, "v3")
        third = wait_for(lambda: new_values(project, second), timeout=120, what="a third tag")
        text = log.read_text()
    finally:
        devreg("stop", cwd=project)
    assert re.search(r"sending changes: 1 of \d+ files", text), text
    assert run_on_each_node(core, namespace, third["RUNTIME_IMAGES_APP"], real_nodes) == {
        n.name: "content v3" for n in real_nodes
    }


@pytest.fixture
def transport(deployed: Deployed, core: Any) -> ExecTransport:
    return ExecTransport(core, namespace=deployed.namespace, selector="app=registry")


def test_exec_stdin_output_and_exit_code(transport: ExecTransport, deployed: Deployed) -> None:
    payload = os.urandom(3 * (1 << 20) + 17)  # several stdin frames
    lines: list[str] = []
    done = transport.run(
        ("sh", "-c", "wc -c; echo 'to stderr' >&2; exit 3"), stdin=payload, log=lines.append
    )
    assert (done.returncode, done.cancelled) == (3, False)
    # stdout and stderr are separate channels: their relative order is not kept.
    assert sorted(line.strip() for line in lines) == sorted([str(len(payload)), "to stderr"])
    assert transport.pod() == deployed.pod.metadata.name
    # Runs as the container's user; the first command's pid file is gone (the one left
    # is this command's own).
    ids: list[str] = []
    assert transport.run(("sh", "-c", "id -u; ls /tmp"), log=ids.append).ok
    assert ids[0] == "1000"
    assert len([name for name in ids[1:] if name.endswith(".pid")]) == 1


def test_exec_without_stdin_and_a_missing_program(transport: ExecTransport) -> None:
    # The API server and kubelet (v1.34) take the v5 protocol, which can half-close
    # stdin (what `wc -c` above waited for); the v4 case is fake_kubelet's.
    ws: Any = transport.open(("true",), stdin=False)
    try:
        assert ws.subprotocol == "v5.channel.k8s.io"
    finally:
        ws.close()
    lines: list[str] = []
    assert transport.run(("echo", "hello", "world"), log=lines.append).ok
    assert lines == ["hello world"]
    assert transport.run(("devreg-no-such-program",)).returncode == 127


def pids_of(transport: ExecTransport, text: str) -> list[str]:
    """Processes in the container whose command line starts with ``text`` (not this
    script's own shell, whose command line holds it further on)."""
    lines: list[str] = []
    script = (
        'for d in /proc/[0-9]*; do c=$(tr "\\0" " " <"$d/cmdline" 2>/dev/null) || continue; '
        'case "$c" in "$0"*) echo "${d#/proc/}";; esac; done'
    )
    transport.run(("sh", "-c", script, text), log=lines.append)
    return [line for line in lines if line.isdigit()]


def test_cancel_stops_the_process_in_the_container(transport: ExecTransport) -> None:
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
        assert started.wait(30)
        assert pids_of(transport, f"sleep {marker}")
        t0 = time.monotonic()
        cancel.set()
        thread.join(30)
        assert not thread.is_alive()
        assert time.monotonic() - t0 < 10
    finally:
        cancel.set()
        thread.join()
    assert result[0].cancelled is True
    wait_for(lambda: not pids_of(transport, f"sleep {marker}"), timeout=10, what="the sleep to end")


def test_failing_and_cancelled_builds_in_the_pod(
    deployed: Deployed, core: Any, tmp_path: Path
) -> None:
    from tests.watcher.build.buildkit.backend_test import BASE, project, request

    backend = in_cluster_backend(
        core, namespace=deployed.namespace, registry_name="registry", registry_port=REGISTRY_PORT
    )
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
    thread.join(90)
    assert not thread.is_alive()
    assert outcome and isinstance(outcome[0], BuildCancelled)
    # buildctl went with its group, and buildkitd stopped the RUN step (rootless,
    # no process sandbox: the step's processes are the container's own).
    transport = backend.transport
    assert isinstance(transport, ExecTransport)
    wait_for(
        lambda: not pids_of(transport, f"sleep {marker}"),
        timeout=20,
        what="the RUN step to stop in the container",
    )
    assert not pids_of(transport, "buildctl build")


def kwok_pod(name: str, containers: tuple[str, ...], *, ready: bool = True) -> dict[str, Any]:
    """A pod kwok runs (Ready at once, no image anywhere); ``ready=False``: one no node
    takes (Pending)."""
    spec: dict[str, Any] = {
        "nodeSelector": {"type": "kwok" if ready else "devreg-test-no-such-node"},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
        "containers": [{"name": c, "image": "registry:2.8.1"} for c in containers],
    }
    return {"metadata": {"name": name, "labels": {"app": "registry"}}, "spec": spec}


def test_pod_lookup_against_the_real_api_server(core: Any) -> None:
    """The newest Ready pod with a ``buildkitd`` container; a clear message when there
    is none. kwok's pods (no kubelet behind them) beside nothing else."""
    namespace = f"devreg-bk-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        transport = ExecTransport(core, namespace=namespace, selector="app=registry")
        core.create_namespaced_pod(namespace, kwok_pod("registry-nobk", ("registry",)))
        core.create_namespaced_pod(
            namespace, kwok_pod("registry-unready", ("registry", "buildkitd"), ready=False)
        )

        def running(name: str) -> bool:
            return bool(core.read_namespaced_pod(name, namespace).status.phase == "Running")

        wait_for(lambda: running("registry-nobk"), timeout=60, what="kwok's pod")
        with pytest.raises(
            FatalError,
            match=r"no Ready registry pod with a 'buildkitd' container \(label app=registry\) "
            rf"in namespace '{namespace}'",
        ):
            transport.pod(refresh=True)
        old = core.create_namespaced_pod(
            namespace, kwok_pod("registry-old", ("registry", "buildkitd"))
        )

        def found() -> str | None:
            try:
                return transport.pod(refresh=True)
            except FatalError:
                return None

        wait_for(lambda: found() == "registry-old", timeout=60, what="the one Ready pod")
        # Creation timestamps have whole seconds: the newer pod in a later second.
        created = old.metadata.creation_timestamp.timestamp()
        wait_for(lambda: time.time() >= created + 1, timeout=5, what="the next second")
        core.create_namespaced_pod(namespace, kwok_pod("registry-new", ("registry", "buildkitd")))
        wait_for(lambda: found() == "registry-new", timeout=60, what="the newest Ready pod")
    finally:
        core.delete_namespace(namespace)
