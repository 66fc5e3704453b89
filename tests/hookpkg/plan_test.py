"""hookpkg/plan.py: each image's plan, decided once and purely."""

from __future__ import annotations

import pytest

from hookpkg.config import LocalRegistry
from hookpkg.delivery import Cluster
from hookpkg.errors import FatalError
from hookpkg.plan import (
    ImagePlan,
    Registry,
    decided_paths,
    first_paths,
    needs_engine,
    needs_registry,
    plan_images,
    registry_namespace,
)
from tests.configs import config, image

REMOTE = Cluster("remote", "gke_acme", None)
KIND = Cluster("kind", "kind-dev", "dev")
DEPLOYED = Registry("localhost:31234", "deployed", "devreg")
PUBLISHED = Registry("localhost:5001", "kep-1755")


@pytest.mark.parametrize(
    ("enabled", "cluster", "builder", "first", "allowed", "decided"),
    [
        pytest.param(
            None,
            REMOTE,
            "docker",
            "local-registry-if-refused",
            False,
            "local-registry",
            id="refused",
        ),
        pytest.param(
            None, REMOTE, "docker", "local-registry-if-refused", True, "own-registry", id="allowed"
        ),
        pytest.param(
            None,
            REMOTE,
            "docker",
            "local-registry-if-refused",
            None,
            "local-registry",
            id="check-could-not-run",
        ),
        pytest.param(
            True, REMOTE, "docker", "local-registry", None, "local-registry", id="enabled"
        ),
        pytest.param(None, KIND, "docker", "kind-load", None, "kind-load", id="kind"),
        pytest.param(False, REMOTE, "docker", "own-registry", None, "own-registry", id="disabled"),
        pytest.param(
            True, REMOTE, "kaniko", "own-registry", None, "own-registry", id="not-eligible"
        ),
    ],
)
def test_paths_before_and_after_the_push_check(
    enabled: bool | None,
    cluster: Cluster,
    builder: str,
    first: str,
    allowed: bool | None,
    decided: str,
) -> None:
    cfg = config(LocalRegistry(enabled=enabled), image("app", "ghcr.io/acme/app", builder))
    paths = first_paths(cfg, cluster)
    assert paths == {"app": first}
    answers = {} if allowed is None else {"app": allowed}
    assert decided_paths(paths, answers) == {"app": decided}
    assert needs_registry(decided_paths(paths, answers)) == (decided == "local-registry")


@pytest.mark.parametrize(
    ("localbuild", "registry", "repository", "builder"),
    [
        pytest.param(True, DEPLOYED, "localhost:31234/acme/app", "engine", id="localbuild"),
        pytest.param(False, DEPLOYED, "localhost:31234/acme/app", "in-cluster", id="sidecar"),
        # a KEP-1755 registry has no buildkitd sidecar: the local engine builds
        pytest.param(False, PUBLISHED, "localhost:5001/acme/app", "engine", id="kep-1755"),
    ],
)
def test_local_registry_images_are_renamed_and_built_by_the_right_builder(
    localbuild: bool, registry: Registry, repository: str, builder: str
) -> None:
    cfg = config(
        LocalRegistry(enabled=True, localbuild=localbuild), image("app", "ghcr.io/acme/app:1.2")
    )
    plans = plan_images(cfg, REMOTE, {"app": "local-registry"}, registry)
    assert plans == {"app": ImagePlan("app", "local-registry", repository, builder)}  # type: ignore[arg-type]
    assert needs_engine(plans) == (builder == "engine")


def test_other_paths_keep_their_names_and_kind_its_cluster() -> None:
    cfg = config(
        LocalRegistry(),
        image("api", "ghcr.io/acme/api"),
        image("web", "nginx"),
    )
    plans = plan_images(cfg, KIND, {"api": "kind-load", "web": "own-registry"}, None)
    assert plans["api"] == ImagePlan("api", "kind-load", "ghcr.io/acme/api", "engine", "dev")
    assert plans["web"] == ImagePlan("web", "own-registry", "nginx", "engine")


def test_a_local_registry_path_without_a_registry_is_an_error() -> None:
    cfg = config(LocalRegistry(enabled=True), image("app", "org/app"))
    with pytest.raises(FatalError, match="no registry is connected"):
        plan_images(cfg, REMOTE, {"app": "local-registry"}, None)


@pytest.mark.parametrize(
    ("flag", "configured", "context", "expected"),
    [
        pytest.param("dev", "cfg", "ctx", "dev", id="flag-wins"),
        pytest.param(None, "cfg", "ctx", "cfg", id="config"),
        pytest.param(None, None, "ctx", "ctx", id="context"),
    ],
)
def test_registry_namespace(
    flag: str | None, configured: str | None, context: str, expected: str
) -> None:
    assert registry_namespace(flag, LocalRegistry(namespace=configured), context) == expected
