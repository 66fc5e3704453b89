"""The session gathers the plan's effects: which builder ``localbuild: false`` gets
(SPEC §3, §6) and the in-cluster backend beside the registry it reached."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hookpkg.project import load_project
from watcher.build.buildkit.backend import BuildkitBackend
from watcher.daemon.session import Session


@dataclass
class Endpoint:
    """The two facts the session reads of ``watcher.cluster.registry.RegistryEndpoint``."""

    source: str
    namespace: str = "devreg"
    host: str = "localhost:31234"
    push_host: str = "localhost:31234"

    def close(self) -> None:
        pass


def config(tmp_path: Path, localbuild: bool) -> Any:
    (tmp_path / "devspace.yaml").write_text(
        f"version: v2beta1\nlocalRegistry:\n  enabled: true\n  localbuild: {str(localbuild).lower()}\n"
        "  name: reg\n  port: 5001\nimages:\n  app:\n    image: ghcr.io/acme/app\n"
    )
    project = load_project(tmp_path / "devspace.yaml")
    cfg, diagnostics = project.config, project.diagnostics
    assert cfg is not None, diagnostics
    return cfg


@pytest.mark.parametrize(
    ("localbuild", "source", "in_cluster"),
    [
        pytest.param(False, "deployed", True, id="sidecar-of-the-deployed-registry"),
        pytest.param(True, "deployed", False, id="localbuild-true-uses-the-engine"),
        pytest.param(False, "kep-1755", False, id="kep-1755-registry-has-no-sidecar"),
    ],
)
def test_in_cluster_backend_choice(
    testenv: Any, tmp_path: Path, localbuild: bool, source: str, in_cluster: bool
) -> None:
    session = Session(testenv.context, None, 5.0, lambda _: None)
    session.endpoint = Endpoint(source)  # type: ignore[assignment]
    try:
        cfg = config(tmp_path, localbuild)
        plans = session.plan(cfg)
        assert (plans["app"].builder == "in-cluster") is in_cluster
        assert plans["app"].repository == "localhost:31234/acme/app"
        backend = session._in_cluster_backend(cfg, plans)
        assert (backend is not None) is in_cluster
        if backend is not None:
            assert isinstance(backend, BuildkitBackend)
            assert backend.push_host == "localhost:5001"  # the registry beside it in the pod
    finally:
        session.close()
