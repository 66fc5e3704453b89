"""``devreg preview`` as a function: the hook's check of one file with the registry
host it is told (the placeholder, a node port, or what the cluster says), for the
cluster the kubeconfig context names. The cluster's side alone is
tests/watcher/cluster/preview_test.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.testenv import TestEnv
from watcher.cli.commands.preview import preview
from watcher.cluster.kube import Kube

CONFIG = """\
version: v2beta1
localRegistry:
  localbuild: true
images:
  app:
    image: ghcr.io/acme/app
"""

KUBECONFIG = """\
apiVersion: v1
current-context: gke
contexts:
- {name: gke, context: {cluster: c}}
- {name: kind-dev, context: {cluster: c}}
clusters:
- {name: c, cluster: {server: 'https://127.0.0.1:1'}}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DEVREG_NODE_HOST", raising=False)
    (tmp_path / "devspace.yaml").write_text(CONFIG)
    return tmp_path / "devspace.yaml"


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kubeconfig whose server nothing listens on: the preview must not need it."""
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(
    ("node_port", "repository"),
    [
        pytest.param(None, "localhost:[NODE_PORT]/acme/app", id="placeholder"),
        pytest.param(31234, "localhost:31234/acme/app", id="node-port"),
    ],
)
def test_offline_preview(config: Path, node_port: int | None, repository: str) -> None:
    result = preview(config=config, node_port=node_port)
    (checked,) = result.files
    assert (checked.file, checked.status, result.exit_code) == (str(config), "ok", 0)
    assert checked.preview is not None
    assert checked.preview.cluster.context == "gke"  # the current context
    (app,) = checked.preview.images
    assert (app.path, app.repository) == ("local-registry-if-refused", repository)


@pytest.mark.usefixtures("offline")
def test_the_context_names_the_cluster(config: Path) -> None:
    (checked,) = preview(config=config, context="kind-dev").files
    assert checked.preview is not None
    assert checked.preview.cluster.kind_name == "dev"
    (app,) = checked.preview.images
    assert (app.path, app.repository) == ("kind-load", "ghcr.io/acme/app")


@pytest.mark.usefixtures("offline")
def test_a_file_with_errors_has_no_preview(config: Path) -> None:
    config.write_text("localRegistry:\n  port: 70000\n")
    result = preview(config=config, node_port=31234)
    (checked,) = result.files
    assert (checked.status, checked.preview, result.exit_code) == ("error", None, 1)


@pytest.fixture
def namespace(testenv: TestEnv) -> Iterator[str]:
    name = f"devreg-t-{secrets.token_hex(4)}"
    yield name
    with Kube(testenv.context) as kube:
        kube.delete("Namespace", None, name)


def test_asking_the_cluster_with_no_registry_yet(
    config: Path, testenv: TestEnv, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--cluster against the real API server: no registry Service there yet, so the
    placeholder, and a note that says how to deploy it."""
    (checked,) = preview(
        config=config, context=testenv.context, namespace=namespace, cluster=True
    ).files
    assert checked.preview is not None
    assert checked.preview.registry == "localhost:[NODE_PORT]"
    assert checked.preview.cluster.context == testenv.context
    assert "`devreg up` deploys it" in capsys.readouterr().err
