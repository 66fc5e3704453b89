"""The transports, where a real kubelet cannot take their place.

``ExecTransport`` against a real kubelet (stdin frames, the v5 stdin close, output and
exit codes, a missing program, cancel, builds, the pod lookup) is in
``real_pod_test.py``. What stays here:

* the v4 channel protocol, which cannot half-close stdin: the test environment's API
  server and kubelets (v1.34) speak v5, and an API server older than 1.30 that offers
  only v4 cannot be run here, so :mod:`fake_kubelet` (a loopback stand-in for the API
  server and kubelet, the real ``kubernetes`` client on our side) refuses v5;
* the error channel's ``Status`` documents, parsed (a pure function);
* the exec request against the real API server for a pod whose node has no kubelet
  that answers (one of kwok's): the API server's own error;
* ``LocalTransport``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from hookpkg.errors import FatalError
from tests.watcher.build.buildkit import fake_kubelet
from tests.watcher.build.buildkit.backend_test import wait_for
from watcher.build.buildkit.backend import build_script
from watcher.build.buildkit.context import pack
from watcher.build.buildkit.transport import ExecTransport, LocalTransport, exit_code


def _busybox_env(tmp_path: Path) -> dict[str, str]:
    """The stand-in's "container": busybox applets first on PATH (sh, tar, head, kill)."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {"PATH": fake_kubelet.busybox_userland(str(tmp_path / "bb")) + ":" + path}


def core_api(host: str) -> Any:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = host
    return client.CoreV1Api(client.ApiClient(configuration))


def test_v4_protocol_without_stdin_close_still_unpacks(tmp_path: Path) -> None:
    """With v4.channel.k8s.io stdin cannot be half-closed; the build script
    bounds tar's input with ``head -c <size>`` instead (tar itself reads
    on past the archive's end marker, waiting for EOF). A framing edge case no
    real kubelet here produces: the test cluster (v1.34) speaks v5, so the
    stand-in offers only v4 (busybox applets, as in the sidecar images)."""
    kubelet = fake_kubelet.FakeKubelet(
        pods=[fake_kubelet.pod("registry-0")],
        env=_busybox_env(tmp_path),
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
