"""devreg's kind path end to end against the real ``kind`` CLI and the test
environment's kind node (scripts/testenv part ``kind``), no stand-in.

On context ``kind-devreg-kind`` devreg takes the ``kind-load`` path (SPEC §2): it
builds with the local engine, runs ``kind load docker-image --name devreg-kind
<image>:<tag>``, and the real kind imports the image into the node's containerd; a
pod pinned to that node runs it with ``imagePullPolicy: Never`` (nothing is pulled).
kind's failures (no such cluster, a node that is not running, an engine that refuses
``docker exec --privileged``, an image missing from the engine, no kind at all) reach
the user as messages that say what to do.

The one adaptation of this sandbox: kind runs ``docker exec --privileged``, which no
container can get here; ``KindCluster.path()`` puts ``scripts/kind-path/docker`` first
on kind's PATH, which drops that flag (its header and docs/testenv.md say why).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.plugins.testenv import KindCluster, TestEnv
from tests.watcher.e2e import copy_example, devreg, kubeconfig_with_context, wait_for
from watcher.build import kind as kind_cli
from watcher.build.backends import BuildError
from watcher.daemon import dotenv

pytestmark = [pytest.mark.testenv, pytest.mark.slow]


@pytest.fixture
def core(kube_api_client: Any) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = f"kind-{secrets.token_hex(4)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name, grace_period_seconds=0)


@pytest.fixture
def project(
    tmp_path: Path, testenv: TestEnv, docker_client: Any, kind_cluster: KindCluster
) -> Iterator[Path]:
    """examples/hello with ``enabled`` unset (on kind the image is loaded, SPEC §2 rule 3)
    under a repository name of its own; its images leave the engine and the node
    afterwards."""
    image = f"ghcr.io/devreg-test/kind-{secrets.token_hex(4)}"
    config = copy_example(tmp_path / "hello", image=image)
    config.write_text(
        config.read_text().replace("  enabled: true\n", "").replace("  localbuild: true\n", "")
    )
    set_marker(config.parent, "v1")
    yield config.parent
    with contextlib.suppress(Exception):
        for img in docker_client.images.list(name=image):
            docker_client.images.remove(img.id, force=True)
    listed = kind_cluster.node_exec("ctr", "--namespace=k8s.io", "images", "ls", "-q").stdout
    loaded = [name for name in listed.split() if name.startswith(f"{image}:")]
    if loaded:
        kind_cluster.node_exec("ctr", "--namespace=k8s.io", "images", "rm", *loaded)


def set_marker(project: Path, marker: str) -> None:
    (project / "src" / "hello.sh").write_text(f'#!/bin/sh\necho "content {marker}"\n')


def kind_env(cluster: KindCluster, **extra: str) -> dict[str, str]:
    """The environment devreg runs in: the real kind (and the docker shim) on PATH."""
    return {"PATH": cluster.path(), **extra}


def build(project: Path, cluster: KindCluster, *args: str, check: bool = True) -> Any:
    return devreg(
        "build",
        "--context",
        cluster.context,
        "--format",
        "json",
        *args,
        cwd=project,
        env=kind_env(cluster),
        check=check,
    )


def forget_in_node(cluster: KindCluster, reference: str) -> None:
    """Take an image out of the kind node's containerd (as a recreated cluster lost it)."""
    done = cluster.node_exec("ctr", "--namespace=k8s.io", "images", "rm", reference)
    assert done.returncode == 0, done.stderr


def run_pinned(
    core: client.CoreV1Api, namespace: str, node: str, image: str, name: str = "app"
) -> str:
    """A pod pinned to ``node`` running ``image`` with ``imagePullPolicy: Never``: the
    image must already be in that node's containerd. Returns its output."""
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": False,
                "containers": [{"name": "app", "image": image, "imagePullPolicy": "Never"}],
            },
        },
    )

    def finished() -> str | None:
        status = core.read_namespaced_pod(name, namespace).status
        for c in status.container_statuses or []:
            waiting = c.state.waiting
            if waiting and waiting.reason in ("ErrImageNeverPull", "ErrImagePull"):
                raise AssertionError(f"{name}: {waiting.reason}: {waiting.message}")
        return status.phase if status.phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, timeout=120, what=f"pod {name} on {node} to finish")
    assert phase == "Succeeded", core.read_namespaced_pod(name, namespace).status
    return str(core.read_namespaced_pod_log(name, namespace)).strip()


# ------------------------------------------------------------------------------------


def test_build_loads_into_the_kind_node_and_a_pinned_pod_runs_it(
    project: Path,
    testenv: TestEnv,
    kind_cluster: KindCluster,
    docker_client: Any,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    preview = devreg("preview", "--context", kind_cluster.context, cwd=project).stdout
    assert f"kind-load (kind cluster {kind_cluster.name})" in preview

    first = build(project, kind_cluster)
    result = json.loads(first.stdout)["images"]["app"]
    assert result["state"] == "built", first.stderr
    reference = result["reference"]
    assert f"kind load docker-image --name {kind_cluster.name} {reference}" in first.stderr
    assert f'not yet present on node "{kind_cluster.node}", loading...' in first.stderr
    # The real kind put the very image the engine built into the node's containerd.
    assert kind_cluster.image_id(reference) == docker_client.images.get(reference).id

    variables = dotenv.read(project / ".devreg.env")
    assert variables["RUNTIME_IMAGES_APP"] == reference  # not rewritten on kind
    assert "DEVREG_REGISTRY" not in variables
    assert run_pinned(core, namespace, kind_cluster.node, reference) == "content v1"

    # Same content: nothing is built, and kind finds the node has it (no import).
    second = build(project, kind_cluster)
    again = json.loads(second.stdout)["images"]["app"]
    assert (again["state"], again["reference"]) == ("up-to-date", reference), second.stderr
    assert f"building {reference}" not in second.stderr
    assert "found to be already present on all nodes" in second.stderr
    assert dotenv.read(project / ".devreg.env") == variables


def test_a_node_that_lost_the_image_gets_it_again_without_a_build(
    project: Path, kind_cluster: KindCluster, core: client.CoreV1Api, namespace: str
) -> None:
    """devreg does not trust its own record of a load: after a cluster was recreated
    (here: the image taken out of the node) the next pass loads it again."""
    first = json.loads(build(project, kind_cluster).stdout)["images"]["app"]
    reference = first["reference"]
    forget_in_node(kind_cluster, reference)
    assert kind_cluster.image_id(reference) is None

    done = build(project, kind_cluster)
    again = json.loads(done.stdout)["images"]["app"]
    assert again["state"] == "pushed", done.stderr  # delivered, not built
    assert f"building {reference}" not in done.stderr
    assert kind_cluster.image_id(reference) is not None
    assert run_pinned(core, namespace, kind_cluster.node, reference) == "content v1"


def test_watch_loads_each_edit_and_the_pinned_pod_runs_the_new_content(
    project: Path, kind_cluster: KindCluster, core: client.CoreV1Api, namespace: str
) -> None:
    env = kind_env(kind_cluster)

    def status() -> dict[str, Any]:
        out = devreg("status", "--format", "json", cwd=project, env=env).stdout
        return dict(json.loads(out)["watcher"])

    devreg("watch", "--detach", "--context", kind_cluster.context, cwd=project, env=env)
    try:
        first = wait_for(
            lambda: status()["images"].get("app", {}).get("tag"),
            timeout=120,
            what="the first load under watch",
        )
        image = dotenv.read(project / ".devreg.env")["RUNTIME_IMAGES_APP_IMAGE"]
        assert run_pinned(core, namespace, kind_cluster.node, f"{image}:{first}") == "content v1"

        set_marker(project, "v2")
        second = wait_for(
            lambda: (t := status()["images"]["app"].get("tag")) != first and t,
            timeout=120,
            what="the edit to be built and loaded",
        )
        variables = dotenv.read(project / ".devreg.env")
        assert variables["RUNTIME_IMAGES_APP"] == f"{image}:{second}"
        assert kind_cluster.image_id(f"{image}:{second}") is not None
        out = run_pinned(core, namespace, kind_cluster.node, f"{image}:{second}", name="app2")
        assert out == "content v2"
    finally:
        devreg("stop", cwd=project, env=env)


# ------------------------------------------------------------------------------------
# kind's failures, in devreg's words


def test_a_kind_cluster_that_does_not_exist(
    project: Path, testenv: TestEnv, kind_cluster: KindCluster, tmp_path: Path
) -> None:
    kubeconfig = kubeconfig_with_context(testenv, tmp_path / "kubeconfig", "kind-devreg-nosuch")
    done = devreg(
        "build",
        cwd=project,
        env=kind_env(kind_cluster, KUBECONFIG=str(kubeconfig)),
        check=False,
    )
    assert done.returncode == 1
    assert (
        "[app] FAILED: kind cluster 'devreg-nosuch' not found: kind finds no node container "
        "labelled io.x-k8s.kind.cluster=devreg-nosuch (the context kind-devreg-nosuch names "
        "that cluster); create it (`kind create cluster --name devreg-nosuch`) or use another "
        "context; kind knows "
    ) in done.stderr
    assert f"'{kind_cluster.name}'" in done.stderr.split("kind knows ", 1)[1].splitlines()[0]
    assert 'ERROR: no nodes found for cluster "devreg-nosuch"' in done.stderr  # kind's own


def test_a_kind_node_that_is_not_running(
    project: Path, testenv: TestEnv, kind_cluster: KindCluster, tmp_path: Path
) -> None:
    """A cluster whose node container exists but is stopped (after a reboot, say)."""
    name = f"devreg-stop{secrets.token_hex(3)}"
    node = f"{name}-control-plane"
    subprocess.run(
        [
            testenv.docker_cli,
            "create",
            "--name",
            node,
            "--label",
            f"io.x-k8s.kind.cluster={name}",
            "--label",
            "io.x-k8s.kind.role=control-plane",
            testenv.base_image,
        ],
        check=True,
        capture_output=True,
    )
    try:
        kubeconfig = kubeconfig_with_context(testenv, tmp_path / "kubeconfig", f"kind-{name}")
        done = devreg(
            "build",
            cwd=project,
            env=kind_env(kind_cluster, KUBECONFIG=str(kubeconfig)),
            check=False,
        )
    finally:
        subprocess.run([testenv.docker_cli, "rm", "-f", node], capture_output=True)
    assert done.returncode == 1
    assert (
        f"[app] FAILED: node '{node}' of kind cluster '{name}' is not running: "
        f"start it (`docker start {node}`) or recreate the cluster"
    ) in done.stderr


def test_an_engine_that_refuses_privileged_exec(
    project: Path, testenv: TestEnv, kind_cluster: KindCluster
) -> None:
    """kind without the sandbox's docker shim: on this machine the engine refuses
    ``docker exec --privileged`` (docs/testenv.md); devreg says so in its words."""
    probe = subprocess.run(
        [testenv.docker_cli, "exec", "--privileged", kind_cluster.node, "true"],
        capture_output=True,
        text=True,
    )
    without_shim = os.pathsep.join([str(Path(kind_cluster.kind).parent), os.environ["PATH"]])
    done = devreg(
        "build",
        "--context",
        kind_cluster.context,
        cwd=project,
        env={"PATH": without_shim},
        check=False,
    )
    if probe.returncode == 0:  # a machine that allows privileged containers
        assert done.returncode == 0, done.stderr
        return
    assert "unable to apply caps" in probe.stdout + probe.stderr
    assert done.returncode == 1
    assert (
        f"[app] FAILED: kind cannot run commands in node '{kind_cluster.node}' of kind "
        f"cluster '{kind_cluster.name}': this Docker engine refuses `docker exec --privileged`"
    ) in done.stderr


def test_kind_missing_from_path(project: Path, kind_cluster: KindCluster) -> None:
    path = "/usr/bin:/bin"
    assert shutil.which("kind", path=path) is None
    done = devreg(
        "build", "--context", kind_cluster.context, cwd=project, env={"PATH": path}, check=False
    )
    assert done.returncode == 1
    assert (
        f"`kind` is not on PATH; it is needed to load images into kind cluster "
        f"'{kind_cluster.name}'"
    ) in done.stderr


def test_an_image_missing_from_the_engine(kind_cluster: KindCluster) -> None:
    """The load step alone (the image vanished from the engine after the build)."""
    reference = f"devreg-test/absent-{secrets.token_hex(4)}:v1"
    seen: list[str] = []
    with pytest.raises(BuildError) as failed:
        kind_cli.load(
            kind_cluster.name,
            reference,
            log=seen.append,
            cancel=threading.Event(),
            kind=kind_cluster.kind,
        )
    assert str(failed.value).startswith(
        f"kind cannot load {reference}: the image is not in the local Docker engine"
    )
    assert f'ERROR: image: "{reference}" not present locally' in failed.value.tail
    assert seen == list(failed.value.tail)  # kind's output went to the log as it came
