"""``devreg preview --cluster`` against the real API server: the placeholder
before the registry exists, its node port after."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookpkg.config import LocalRegistry
from watcher.cluster import deploy as deploy
from watcher.cluster.kube import Kube
from watcher.cluster.preview import registry_from_cluster


@pytest.fixture
def namespace(testenv: Any) -> Iterator[str]:
    name = f"devreg-t-{secrets.token_hex(4)}"
    yield name
    with Kube(testenv.context) as kube:
        kube.delete("Namespace", None, name)


CONFIG = (
    "version: v2beta1\nlocalRegistry:\n  localbuild: true\nimages:\n  app:\n    image: org/app\n"
)


def test_registry_from_cluster(
    testenv: Any, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "devspace.yaml"
    cfg.write_text(CONFIG)
    assert (
        registry_from_cluster(config=cfg, context=testenv.context, namespace=namespace)
        == "localhost:[NODE_PORT]"
    )
    assert "`devreg up` deploys it" in capsys.readouterr().err
    with Kube(testenv.context) as kube:
        deployed = deploy.ensure_objects(kube, LocalRegistry(localbuild=True), namespace)
    assert (
        registry_from_cluster(config=cfg, context=testenv.context, namespace=namespace)
        == f"localhost:{deployed.node_port}"
    )
