"""What a real kubelet reports about a registry pod that never becomes Ready, as
``devreg up`` and ``devreg status`` pass it on (scripts/testenv part ``nodes``).

Three faults, each made for real: a registry image no node can pull, a registry
container that exits at once (an image built here FROM the busybox base and imported
into every real node's containerd), and one that runs but never serves ``GET /v2/``
(its readiness probe fails). For each, ``up --timeout 20`` exits 1 within that
timeout, naming the pod, the container, the kubelet's reason and its message; and
``status`` (text and JSON) says the same and exits 1.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.plugins.testenv import RealNode, TestEnv, import_images, remove_images
from tests.watcher.e2e import devreg

pytestmark = [pytest.mark.testenv, pytest.mark.slow]

TIMEOUT = 20
CRASH_MESSAGE = "crash-test: no storage configured"
CONFIG = """\
version: v2beta1
name: t
localRegistry:
  localbuild: true
  image: {image}
images:
  app:
    image: ghcr.io/example/app
"""


@pytest.fixture(scope="module")
def test_images(testenv: TestEnv, real_nodes: list[RealNode]) -> Iterator[dict[str, str]]:
    """Registry images that fail on a real node, in every node's containerd: ``crash``
    exits 3 at once after one line on stderr, ``silent`` runs and never listens."""
    tag = secrets.token_hex(4)
    entrypoints = {
        "crash": ["/bin/sh", "-c", f"echo '{CRASH_MESSAGE}' >&2; exit 3"],
        "silent": ["/bin/sleep", "3600"],
    }
    images = {}
    with contextlib.ExitStack() as stack:
        for key, entrypoint in entrypoints.items():
            image = f"devreg-test/registry-{key}:{tag}"  # not :latest: IfNotPresent
            context = Path(stack.enter_context(_tempdir()))
            (context / "Dockerfile").write_text(
                f"FROM {testenv.base_image}\nENTRYPOINT {json.dumps(entrypoint)}\n"
            )
            subprocess.run(
                [testenv.docker_cli, "build", "-q", "-t", image, str(context)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            images[key] = image
    import_images(testenv, real_nodes, *images.values())
    try:
        yield images
    finally:
        remove_images(testenv, real_nodes, *images.values())
        subprocess.run(
            [testenv.docker_cli, "rmi", *images.values()], capture_output=True, check=False
        )


@contextlib.contextmanager
def _tempdir() -> Iterator[str]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="devreg-regfail-") as d:
        yield d


def failing_up(
    core: client.CoreV1Api, tmp_path: Path, namespace: str, image: str
) -> tuple[str, str]:
    """``devreg up`` with ``localRegistry.image: image``: exit 1 within the timeout;
    returns (its stderr, the registry pod's name)."""
    (tmp_path / "devspace.yaml").write_text(CONFIG.format(image=image))
    started = time.monotonic()
    done = devreg(
        "up", "--namespace", namespace, "--timeout", str(TIMEOUT), cwd=tmp_path, check=False
    )
    took = time.monotonic() - started
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""  # "ready" is never printed
    # The timeout, plus what a command costs here and one last look at the pod.
    assert TIMEOUT <= took < TIMEOUT + 10, took
    pods = core.list_namespaced_pod(namespace, label_selector="app=registry").items
    (pod,) = [p for p in pods if p.metadata.deletion_timestamp is None]
    return done.stderr, str(pod.metadata.name)


def the_error(stderr: str) -> str:
    """The ``devreg: error: …`` part of the output (after the progress lines)."""
    _, found, rest = stderr.partition("devreg: error: ")
    assert found, stderr
    return rest


def status_says(project: Path, namespace: str) -> tuple[str, dict[str, Any]]:
    """``devreg status`` in text and JSON: both exit 1 while the pod is not Ready."""
    text = devreg("status", "--namespace", namespace, cwd=project, check=False)
    assert text.returncode == 1, (text.stdout, text.stderr)
    doc = devreg("status", "--namespace", namespace, "--format", "json", cwd=project, check=False)
    assert doc.returncode == 1, (doc.stdout, doc.stderr)
    registry: dict[str, Any] = json.loads(doc.stdout)["registry"]
    assert registry["deployed"] and not registry["pod_ready"], registry
    return text.stdout, registry


def test_an_image_no_node_can_pull(
    testenv: TestEnv,
    real_nodes: list[RealNode],
    core: client.CoreV1Api,
    namespace: str,
    tmp_path: Path,
) -> None:
    image = "localhost:1/nope/registry:1"
    stderr, pod = failing_up(core, tmp_path, namespace, image)
    error = the_error(stderr)
    assert error.startswith(f"the registry pod {namespace}/{pod} is not Ready after {TIMEOUT} s")
    # The kubelet alternates between the two reasons; its message names the image and
    # why the pull failed (nothing listens on port 1).
    prefix = f"  registry pod {namespace}/{pod} container registry: "
    line = next(line for line in error.splitlines() if line.startswith(prefix))
    reason, _, message = line[len(prefix) :].partition(": ")
    assert reason in ("ErrImagePull", "ImagePullBackOff"), line
    assert f'"{image}"' in message and "connect: connection refused" in message, line
    assert f"describe pod {pod}" in error
    # Said as soon as the kubelet reported it, not only at the deadline.
    assert f"devreg: registry pod {namespace}/{pod} container registry: ErrImagePull: " in stderr

    text, registry = status_says(tmp_path, namespace)
    assert f"pod {pod} Pending, not Ready, on node " in text
    assert f"registry pod {namespace}/{pod} container registry: " in text
    assert "connect: connection refused" in text
    (problem,) = registry["pod_problems"]
    assert problem.startswith(f"registry pod {namespace}/{pod} container registry: ")
    assert f'"{image}"' in problem
    assert registry["pod_node"] in {n.name for n in real_nodes}


def test_a_registry_container_that_crashes(
    testenv: TestEnv,
    real_nodes: list[RealNode],
    core: client.CoreV1Api,
    namespace: str,
    tmp_path: Path,
    test_images: dict[str, str],
) -> None:
    stderr, pod = failing_up(core, tmp_path, namespace, test_images["crash"])
    error = the_error(stderr)
    assert error.startswith(f"the registry pod {namespace}/{pod} is not Ready after {TIMEOUT} s")
    line = f"  registry pod {namespace}/{pod} container registry: CrashLoopBackOff: back-off "
    assert line in error, error
    # The last termination: its exit code and what the container said (its log,
    # read through the kubelet: it wrote no termination message).
    assert "last exit code 3 (Error): " + CRASH_MESSAGE in error, error
    assert "restarted " in error

    text, registry = status_says(tmp_path, namespace)
    assert line.strip() in text
    assert CRASH_MESSAGE in text
    (problem,) = registry["pod_problems"]
    assert "container registry: CrashLoopBackOff: " in problem
    assert f"last exit code 3 (Error): {CRASH_MESSAGE}" in problem


def test_a_registry_that_never_answers_its_readiness_probe(
    testenv: TestEnv,
    real_nodes: list[RealNode],
    core: client.CoreV1Api,
    namespace: str,
    tmp_path: Path,
    test_images: dict[str, str],
) -> None:
    stderr, pod = failing_up(core, tmp_path, namespace, test_images["silent"])
    ip = core.read_namespaced_pod(pod, namespace).status.pod_ip
    error = the_error(stderr)
    assert error.startswith(
        f"the registry pod {namespace}/{pod} is not Ready after {TIMEOUT} s (phase Running"
    )
    # The probe's own words come from the pod's events (the kubelet's).
    line = (
        f"  registry pod {namespace}/{pod} container registry: Unhealthy: Readiness probe "
        f'failed: Get "http://{ip}:5000/v2/": dial tcp {ip}:5000: connect: connection refused'
    )
    assert line in error, error

    text, registry = status_says(tmp_path, namespace)
    assert line.strip() in text
    (problem,) = registry["pod_problems"]
    assert problem.startswith(line.strip())
