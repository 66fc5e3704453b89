"""scripts/testenv against itself: every check here needs the real part (no fakes).

The Kubernetes checks go through a real kube-apiserver (validation, server-side apply,
the NodePort allocator, RBAC), the controller-manager and scheduler (Deployments,
StatefulSets, PVC binding), the real nodes (tests/scripts/nodes_test.py has their own
checks) and kwok (pods that ask for its tainted nodes Running without a kubelet).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.plugins.testenv import SCRIPT, TestEnv, parse_exports

pytestmark = pytest.mark.testenv

T = TypeVar("T")

# A container that runs on a real node: the image is imported into every node, never
# pulled (":latest" would mean imagePullPolicy Always), and it keeps running.
BUSYBOX_SLEEPER: dict[str, Any] = {
    "image": "devreg-test/busybox:latest",
    "imagePullPolicy": "Never",
    "command": ["sleep", "3600"],
}


def wait_until(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as e:  # noqa: BLE001 - remember it for the message
            last = e
        else:
            if result:
                return result
            last = result
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def script(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def state_pids(state_dir: str | Path) -> dict[str, int]:
    data = json.loads((Path(state_dir) / "state.json").read_text())
    return {name: int(rec["pid"]) for name, rec in data["procs"].items()}


def pid_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmd and pid_running(int(proc.name)):
            found.append(f"{proc.name}: {cmd}")
    return found


# ------------------------------------------------------------------------------------
# Kubernetes


@pytest.fixture(scope="module")
def namespace(kube_api_client: Any) -> Iterator[str]:
    from kubernetes import client

    core = client.CoreV1Api(kube_api_client)
    name = f"testenv-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def test_version_reports_the_built_release(testenv: TestEnv, kube_api_client: Any) -> None:
    from kubernetes import client

    info = client.VersionApi(kube_api_client).get_code()
    assert info.git_version == testenv.kube_version
    assert info.major == "1" and info.minor == testenv.kube_version.split(".")[1]


def test_server_side_apply_deployment_gets_running_ready_pod(
    kube_api_client: Any, namespace: str
) -> None:
    from kubernetes import client, dynamic

    deployments = dynamic.DynamicClient(kube_api_client).resources.get(
        api_version="apps/v1", kind="Deployment"
    )
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [BUSYBOX_SLEEPER | {"name": "web"}]},
            },
        },
    }
    applied = deployments.server_side_apply(
        body=manifest, namespace=namespace, field_manager="devreg-test", force_conflicts=True
    )
    managers = [m.manager for m in applied.metadata.managedFields]
    assert "devreg-test" in managers  # the API server tracked our fields: real SSA

    core = client.CoreV1Api(kube_api_client)

    def ready_pod() -> Any:
        for pod in core.list_namespaced_pod(namespace, label_selector="app=web").items:
            ready = any(
                c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
            )
            if pod.status.phase == "Running" and ready:
                return pod
        return None

    pod = wait_until("a Running, Ready pod of Deployment web", ready_pod, 90)
    assert pod.spec.node_name  # bound by the scheduler to a real node (kwok's are tainted)
    apps = client.AppsV1Api(kube_api_client)
    wait_until(
        "Deployment web to report 1 ready replica",
        lambda: (
            apps.read_namespaced_deployment(name="web", namespace=namespace).status.ready_replicas
            == 1
        ),
        60,
    )


def test_kwok_runs_only_pods_that_ask_for_its_nodes(kube_api_client: Any, namespace: str) -> None:
    """kwok's nodes stay for scale tests: a pod that tolerates their taint and selects
    them is Running at once, with no image anywhere (kwok only writes the status)."""
    from kubernetes import client

    core = client.CoreV1Api(kube_api_client)
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "fake"},
            "spec": {
                "nodeSelector": {"type": "kwok"},
                "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                "containers": [{"name": "c", "image": "example.invalid/none:1"}],
            },
        },
    )
    pod = wait_until(
        "pod fake Running on a kwok node",
        lambda: (p := core.read_namespaced_pod("fake", namespace)).status.phase == "Running" and p,
        60,
    )
    node = core.read_node(pod.spec.node_name)
    assert node.status.node_info.container_runtime_version == "kwok"


def test_statefulset_claims_bind_and_pod_runs(kube_api_client: Any, namespace: str) -> None:
    """A claim binds to a provisioned hostPath volume that a real kubelet mounts, and a
    pod running as uid 1000 with a read-only root filesystem (as devreg's registry
    does) can write into it: the provisioner makes its directories world-writable."""
    from kubernetes import client

    apps = client.AppsV1Api(kube_api_client)
    core = client.CoreV1Api(kube_api_client)
    writer = BUSYBOX_SLEEPER | {
        "name": "db",
        "command": ["sh", "-c", "echo written-by-$(id -u) > /data/f && exec sleep 3600"],
        "readinessProbe": {"exec": {"command": ["cat", "/data/f"]}, "periodSeconds": 1},
        "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    apps.create_namespaced_stateful_set(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "serviceName": "db",
                "replicas": 1,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"terminationGracePeriodSeconds": 0, "containers": [writer]},
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        },
    )
    pvc = wait_until(
        "PVC data-db-0 Bound",
        lambda: (
            (p := core.read_namespaced_persistent_volume_claim("data-db-0", namespace))
            and p.status.phase == "Bound"
            and p
        ),
        90,
    )
    assert pvc.spec.storage_class_name == "devreg-standard"  # the default StorageClass
    wait_until(
        "StatefulSet db to report 1 ready replica",
        lambda: apps.read_namespaced_stateful_set("db", namespace).status.ready_replicas == 1,
        90,
    )
    pod = core.read_namespaced_pod("db-0", namespace)
    node = core.read_node(pod.spec.node_name)
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    written = Path(pv.spec.host_path.path) / "f"
    assert written.read_text() == "written-by-1000\n"
    assert written.stat().st_uid == 1000
    assert written.parent.stat().st_mode & 0o777 == 0o777


def test_nodeport_comes_from_the_allocator(kube_api_client: Any, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube_api_client)

    def service(name: str, node_port: int | None = None) -> dict[str, Any]:
        port: dict[str, Any] = {"port": 80, "targetPort": 8080}
        if node_port is not None:
            port["nodePort"] = node_port
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [port]},
        }

    first = core.create_namespaced_service(namespace, service("np-a"))
    allocated = first.spec.ports[0].node_port
    assert 30000 <= allocated <= 32767
    assert first.spec.cluster_ip.startswith("10.96.")
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_service(namespace, service("np-b", allocated))
    assert refused.value.status == 422
    assert "already allocated" in refused.value.body


def test_invalid_label_value_is_rejected(kube_api_client: Any, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube_api_client)
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "bad-label", "labels": {"app": "not a valid value!"}},
    }
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_config_map(namespace, body)
    assert rejected.value.status == 422
    details = json.loads(rejected.value.body)
    assert details["reason"] == "Invalid"
    assert any(c["field"] == "metadata.labels" for c in details["details"]["causes"])


def test_limited_context_may_not_create_deployments(
    testenv: TestEnv, limited_kube_api_client: Any
) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ns = testenv.limited_namespace
    apps = client.AppsV1Api(limited_kube_api_client)
    apps.list_namespaced_deployment(ns)  # reading is allowed
    name = f"denied-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ApiException) as denied:
        apps.create_namespaced_deployment(
            ns,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "c", "image": "x"}]},
                    },
                },
            },
        )
    assert denied.value.status == 403
    message = json.loads(denied.value.body)["message"]
    assert 'User "devreg-limited" cannot create resource "deployments"' in message
    # ... while other objects in the same namespace may be written: the refusal is RBAC's.
    core = client.CoreV1Api(limited_kube_api_client)
    core.create_namespaced_config_map(ns, {"metadata": {"name": name}})
    core.delete_namespaced_config_map(name, ns)


# ------------------------------------------------------------------------------------
# Docker Engine, images, registry


def test_image_from_local_base_runs(testenv: TestEnv, docker_client: Any, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        f'FROM {testenv.base_image}\nRUN echo built-from-base > /msg\nCMD ["cat", "/msg"]\n'
    )
    tag = f"devreg-test/from-base:{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [testenv.docker_cli, "build", "-q", "-t", tag, str(tmp_path)],
        check=True,
        capture_output=True,
        env={**os.environ, "DOCKER_BUILDKIT": "1", "DOCKER_HOST": testenv.docker_host},
        timeout=300,
    )
    try:
        out = docker_client.containers.run(tag, remove=True)
        assert out.decode().strip() == "built-from-base"
    finally:
        docker_client.images.remove(tag, force=True)


def test_push_shows_in_catalog(testenv: TestEnv, docker_client: Any) -> None:
    repo = f"{testenv.registry}/devreg-test/pushed-{uuid.uuid4().hex[:8]}"
    image = docker_client.images.get(testenv.base_image)
    image.tag(repo, "v1")
    try:
        for line in docker_client.images.push(repo, tag="v1", stream=True, decode=True):
            assert "error" not in line, line
    finally:
        docker_client.images.remove(f"{repo}:v1")
    # The catalog is paginated (100 by default) and the shared registry holds
    # every test's repositories: start the page just before ours.
    name = repo.split("/", 1)[1]
    last = name[:-1]
    url = f"http://{testenv.registry}/v2/_catalog?n=10&last={last}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        catalog = json.loads(resp.read())["repositories"]
    assert name in catalog


def test_registry_image_serves(testenv: TestEnv, docker_client: Any) -> None:
    container = docker_client.containers.run(
        testenv.registry_image,
        detach=True,
        environment={"REGISTRY_HTTP_ADDR": ":5000"},
        ports={"5000/tcp": ("127.0.0.1", None)},
    )
    try:

        def port() -> str | None:
            container.reload()
            bindings = container.attrs["NetworkSettings"]["Ports"].get("5000/tcp")
            return bindings[0]["HostPort"] if bindings else None

        host_port = wait_until("the registry container's port", port, 30)

        def v2() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/v2/", timeout=3) as r:
                return r.status == 200

        wait_until("GET /v2/ on the registry container", v2, 30)
    finally:
        container.remove(force=True)


# ------------------------------------------------------------------------------------
# The script itself


def test_second_up_is_a_fast_no_op(testenv: TestEnv) -> None:
    before = state_pids(testenv.state_dir)
    t0 = time.monotonic()
    proc = script("up", timeout=300)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 30, f"second up took {elapsed:.1f}s"
    assert state_pids(testenv.state_dir) == before
    exported = parse_exports(proc.stdout)
    assert exported["DEVREG_TEST_REGISTRY"] == testenv.registry
    assert exported["KUBECONFIG"] == testenv.kubeconfig
    # stdout is only export lines, so `eval "$(scripts/testenv up)"` works
    assert all(line.startswith("export ") for line in proc.stdout.splitlines())


def test_env_prints_exports_of_running_one(testenv: TestEnv) -> None:
    proc = script("env", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert parse_exports(proc.stdout)["DOCKER_HOST"] == testenv.docker_host


def test_env_without_environment_says_so(tmp_path: Path) -> None:
    proc = script("env", env={"DEVREG_TESTENV_DIR": str(tmp_path / "none")}, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "scripts/testenv up" in proc.stderr


def test_port_in_use_names_part_command_and_output(testenv: TestEnv, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"DEVREG_TESTENV_DIR": str(state), "DEVREG_TESTENV_REGISTRY_PORT": str(port)}
        try:
            proc = script("up", "registry", env=env, timeout=120)
        finally:
            script("down", env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "part 'registry' failed" in proc.stderr
    assert f"command: {testenv.registry_bin} serve" in proc.stderr
    assert "address already in use" in proc.stderr  # the registry's own last lines


def test_failed_build_names_part_command_and_output(testenv: TestEnv) -> None:
    cache = Path(os.environ.get("DEVREG_TESTENV_CACHE", Path.home() / ".cache" / "devreg-testenv"))
    bogus = "v3.6.999"
    try:
        proc = script("build", env={"DEVREG_TESTENV_ETCD_VERSION": bogus}, timeout=300)
    finally:
        import shutil

        shutil.rmtree(cache / "src" / f"etcd-{bogus}", ignore_errors=True)
        (cache / "logs" / f"etcd-{bogus}.log").unlink(missing_ok=True)
    assert proc.returncode == 1
    assert "part 'kube build (etcd)' failed" in proc.stderr
    assert "command: " in proc.stderr and " mod tidy" in proc.stderr
    assert bogus in proc.stderr.split("last lines of output", 1)[1]  # go's own words


def test_missing_tool_names_part_and_command(tmp_path: Path) -> None:
    proc = script(
        "build",
        env={
            "DEVREG_TESTENV_GO": str(tmp_path / "no-go"),
            "DEVREG_TESTENV_ETCD_VERSION": "v3.6.999",
        },
        timeout=60,
    )
    assert proc.returncode == 1
    assert "part 'kube build' failed" in proc.stderr
    assert f"command: {tmp_path / 'no-go'} version" in proc.stderr


@pytest.mark.slow
def test_down_leaves_no_process_behind(testenv: TestEnv, tmp_path: Path) -> None:
    """A second, complete environment (sharing the Docker Engine) goes up and down."""
    state = tmp_path / "env2"
    env = {"DEVREG_TESTENV_DIR": str(state)}
    try:
        up = script("up", "registry", "kube", env=env, timeout=600)
        assert up.returncode == 0, up.stderr
        exported = parse_exports(up.stdout)
        assert exported["DEVREG_TEST_REGISTRY"] != testenv.registry
        pids = state_pids(state)
        assert set(pids) >= {
            "registry",
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
            "provisioner",
        }
        assert "dockerd" not in pids  # the engine was running: not this environment's
        assert all(pid_running(p) for p in pids.values())
    finally:
        down = script("down", env=env, timeout=300)
    assert down.returncode == 0, down.stderr
    assert [p for p in pids.values() if pid_running(p)] == []
    assert processes_mentioning(str(state)) == []
    assert script("env", env=env, timeout=60).returncode == 1


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 error"), ("", "1 skipped")])
def test_plugin_fails_in_ci_and_skips_elsewhere(
    testenv: TestEnv, tmp_path: Path, ci: str, outcome: str
) -> None:
    """An environment that cannot start (here: the registry's port is taken) fails a CI run."""
    probe = tmp_path / "probe_test.py"
    probe.write_text("def test_needs_env(testenv):\n    pass\n")
    repo = SCRIPT.parents[1]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {
            **os.environ,
            "CI": ci,
            "PYTHONPATH": str(repo),
            "DEVREG_TESTENV_DIR": str(tmp_path / "state"),
            "DEVREG_TESTENV_REGISTRY_PORT": str(busy.getsockname()[1]),
        }
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-p",
                    "tests.plugins.testenv",
                    "-p",
                    "no:cacheprovider",
                    "-rs",
                    str(probe),
                ],
                capture_output=True,
                text=True,
                timeout=300,
                cwd=tmp_path,
                env=env,
            )
        finally:
            script("down", env={"DEVREG_TESTENV_DIR": str(tmp_path / "state")}, timeout=120)
    assert outcome in proc.stdout, proc.stdout
    assert "part 'registry' failed" in proc.stdout
    assert proc.returncode == (1 if ci else 0)
