"""``devreg up`` / ``devreg down`` through the command line, against the real
API server: output in text and JSON, exit codes, and a config that is
rejected before anything reaches the cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from watcher.kube import Kube
from watcher.main import main

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
    testenv: Any, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(write_config(tmp_path))
    common = ["-c", cfg, "--context", testenv.context, "--namespace", namespace]
    rc, out, err = run(capsys, "up", *common)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("registry localhost:") and lines[0].endswith(" is ready")
    assert f"  namespace  {namespace}" in lines
    assert "  name       registry" in lines
    assert "  workload   Deployment" in lines
    assert any(line.startswith("  node port  3") for line in lines)
    # No kubelet here: reaching it fails, softly, and says why.
    assert any(line.startswith("  reach      not from this machine: ") for line in lines)
    assert f"devreg: created namespace {namespace}" in err
    assert "warning: the registry runs, but this machine cannot reach it" in err

    rc, out, err = run(capsys, "up", *common, "--format", "json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["source"] == "deployed"
    assert doc["namespace"] == namespace and doc["name"] == "registry"
    assert doc["workload_kind"] == "Deployment"
    assert doc["host"] == f"localhost:{doc['node_port']}"
    assert doc["context"] == testenv.context
    assert doc["reachable"] is False and doc["reach"] == "unreachable"
    assert set(doc) == {
        "context", "host", "kep1755", "name", "namespace", "node_port", "pod", "push_host",
        "reach", "reach_error", "reachable", "server", "source", "workload_kind",
    }  # fmt: skip

    rc, out, err = run(capsys, "down", *common, "--format", "json")
    assert rc == 0, err
    assert json.loads(out)["removed"] == ["Deployment/registry", "Service/registry"]
    rc, out, err = run(capsys, "down", *common)
    assert rc == 0, err
    assert (
        out
        == f"nothing to remove: no registry 'registry' in namespace {namespace} (context {testenv.context})\n"
    )


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
