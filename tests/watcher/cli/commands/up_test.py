"""``devreg up`` / ``devreg down`` through the command line, against the real
API server: output in text and JSON, exit codes, and a config that is
rejected before anything reaches the cluster."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.watcher.e2e import devreg_argv, published_registry
from tests.watcher.registries import free_port
from watcher.cli.main import main
from watcher.cluster.kube import Kube
from watcher.cluster.registry import answers_v2

CONFIG = """\
version: v2beta1
name: t
localRegistry:
  localbuild: {localbuild}
  image: {image}
images:
  app:
    image: ghcr.io/example/app
"""


def write_config(tmp_path: Path, *, image: str = "registry:2.8.1", localbuild: bool = True) -> Path:
    path = tmp_path / "devspace.yaml"
    path.write_text(CONFIG.format(image=image, localbuild=str(localbuild).lower()))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_up_text_then_json_then_down(
    testenv: Any,
    namespace: str,
    own_registry: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A new registry on the test environment's real nodes: `up` says
    "ready" only once localhost:<nodePort> answers (kube-proxy of the node on
    this machine), waiting for it when the pod is Ready before that."""
    cfg = str(write_config(tmp_path))
    common = ["-c", cfg, "--context", testenv.context, "--namespace", namespace]
    rc, out, err = run(capsys, "up", *common)
    assert rc == 0, err
    assert f"devreg: created namespace {namespace}" in err
    with Kube(testenv.context) as kube:
        service = kube.get("Service", namespace, "registry")
    assert service is not None
    port = service["spec"]["ports"][0]["nodePort"]
    lines = out.splitlines()
    assert lines[0] == f"registry localhost:{port} is ready"
    assert f"  namespace  {namespace}" in lines
    assert "  name       registry" in lines
    assert "  workload   Deployment" in lines
    assert f"  node port  {port}" in lines
    assert f"  reach      localhost:{port} answers GET /v2/" in lines
    # Then the pull probe, every real node pulling from localhost:<port> (issue 14).
    assert any(line.startswith("pull probe: ") and f"localhost:{port}/" in line for line in lines)
    assert "  devreg-node-0: pulls" in lines
    assert answers_v2(f"localhost:{port}") is None

    rc, out, err = run(capsys, "up", *common, "--format", "json")
    assert rc == 0, err
    assert "waiting for" not in err  # a registry that answers costs one try
    doc = json.loads(out)
    assert doc["source"] == "deployed"
    assert doc["namespace"] == namespace and doc["name"] == "registry"
    assert doc["workload_kind"] == "Deployment"
    assert doc["host"] == doc["push_host"] == f"localhost:{port}"
    assert doc["node_port"] == port
    assert doc["context"] == testenv.context
    assert doc["reachable"] is True and doc["reach"] == "localhost"
    assert doc["reach_error"] is None
    assert set(doc) == {
        "context", "host", "kep1755", "name", "namespace", "node_port", "pod", "push_host",
        "reach", "reach_error", "reachable", "server", "source", "workload_kind", "pull_probe",
    }  # fmt: skip
    assert doc["pull_probe"]["ok"] is True and doc["pull_probe"]["cached"] is True

    rc, out, err = run(capsys, "down", *common, "--format", "json")
    assert rc == 0, err
    assert json.loads(out)["removed"] == ["Deployment/registry", "Service/registry"]
    rc, out, err = run(capsys, "down", *common)
    assert rc == 0, err
    assert (
        out
        == f"nothing to remove: no registry 'registry' in namespace {namespace} (context {testenv.context})\n"
    )


def test_up_with_a_published_registry_that_never_answers(
    testenv: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    cfg = str(write_config(tmp_path))
    with published_registry(testenv, f"127.0.0.1:{port}"):
        rc, out, err = run(capsys, "up", "-c", cfg, "--context", testenv.context, "--timeout", "1")
    assert rc == 1 and out == ""
    assert (
        f"devreg: error: the registry 127.0.0.1:{port} that the cluster publishes (KEP-1755) "
        "does not answer GET /v2/ from this machine (tried for 1 s):\n"
        f"  127.0.0.1:{port}: connection refused (tried "
    ) in err
    assert f"that this registry runs and listens on 127.0.0.1:{port}" in err


def test_invalid_image_is_rejected_before_anything_is_applied(
    testenv: Any, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(write_config(tmp_path, image="Registry:2"))
    rc, out, err = run(
        capsys, "up", "-c", cfg, "--context", testenv.context, "--namespace", namespace
    )
    assert rc == 1
    assert "localRegistry.image" in err
    assert "nothing was applied" in err
    with Kube(testenv.context) as kube:
        assert kube.get("Namespace", None, namespace) is None


def test_limited_context_exit_1_names_what_it_lacks(
    testenv: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(write_config(tmp_path))
    rc, out, err = run(
        capsys, "up", "-c", cfg, "--context", testenv.limited_context,
        "--namespace", testenv.limited_namespace,
    )  # fmt: skip
    assert rc == 1
    assert out == ""
    assert (
        f"context '{testenv.limited_context}' (user 'devreg-limited') may not patch "
        f"deployments.apps in namespace '{testenv.limited_namespace}'"
    ) in err


def test_unknown_context(tmp_path: Path, testenv: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "up", "-c", str(write_config(tmp_path)), "--context", "nope")
    assert rc == 1
    assert "context 'nope' is not in the kubeconfig" in err
    assert testenv.context in err  # the contexts there are listed


def test_up_away_from_the_nodes_reaches_the_registry_through_a_port_forward(
    testenv: Any, namespace: str, own_registry: None, tmp_path: Path
) -> None:
    """From the environment's 'away' network namespace (a laptop: no node,
    no node port answers there) `up` waits for localhost alone for 3 s after
    the new registry became Ready, then reaches it through a real
    port-forward (the API server to the node's kubelet to the pod)."""
    netns = os.environ.get("DEVREG_TEST_AWAY_NETNS")
    kubeconfig = os.environ.get("DEVREG_TEST_AWAY_KUBECONFIG")
    if not netns or not kubeconfig:
        pytest.skip("the test environment has no 'away' network namespace")
    cfg = str(write_config(tmp_path))

    def up_away(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", netns, "env", f"KUBECONFIG={kubeconfig}", *devreg_argv(),
             "up", "-c", cfg, "--context", testenv.context, "--namespace", namespace, *args],
            capture_output=True, text=True, timeout=180, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    first = up_away()
    assert first.returncode == 0, first.stderr
    port = int(first.stdout.split("node port  ", 1)[1].split()[0])
    assert first.stdout.splitlines()[0] == f"registry localhost:{port} is ready"
    assert (
        f"  reach      through a port-forward 127.0.0.1:{port} -> the registry pod "
        "(verified; it ends with this command, `devreg watch` keeps its own)"
    ) in first.stdout.splitlines()
    # The probe image went in through that port-forward; the nodes pulled it.
    assert "  devreg-node-1: pulls" in first.stdout.splitlines()
    assert (
        f"waiting for localhost:{port} to answer GET /v2/ (the registry has just become Ready; "
        "a port-forward is tried too after 3 s;"
    ) in first.stderr
    assert f"devreg: port-forward 127.0.0.1:{port} answers after " in first.stderr

    again = up_away("--format", "json")  # Ready already: both ways at once, no wait
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert (doc["reach"], doc["push_host"]) == ("port-forward", f"127.0.0.1:{port}")
    assert doc["pod"] and doc["pod"].startswith("registry-")
    assert "waiting for" not in again.stderr
