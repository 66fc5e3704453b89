"""SPEC §2: cluster classification from the kubeconfig and the path word."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hookpkg.config import Image, LocalRegistry
from hookpkg.delivery import Cluster, classify, delivery_path


def kubeconfig(context: str, extension: dict[str, Any] | None = None) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": "https://x"}
    if extension:
        cluster["extensions"] = [{"name": "cluster_info", "extension": extension}]
    return {
        "current-context": context,
        "contexts": [{"name": context, "context": {"cluster": "c"}}],
        "clusters": [{"name": "c", "cluster": cluster}],
    }


CLASSIFY = [
    pytest.param("kind-dev", None, ("kind", "dev"), id="kind"),
    pytest.param("minikube", None, ("local", None), id="minikube-name"),
    pytest.param(
        "my-mk", {"provider": "minikube.sigs.k8s.io"}, ("local", None), id="minikube-extension"
    ),
    pytest.param("docker-desktop", None, ("local", None), id="docker-desktop"),
    pytest.param("docker-for-desktop", None, ("local", None), id="docker-for-desktop"),
    pytest.param("orbstack", None, ("local", None), id="orbstack"),
    pytest.param(
        "vcluster_x_ns_docker-desktop", None, ("local", None), id="vcluster-docker-desktop"
    ),
    pytest.param("vcluster_x_ns_kind-dev", None, ("local", None), id="vcluster-kind"),
    pytest.param("vcluster-docker_x", None, ("local", None), id="vcluster-docker"),
    pytest.param("loft-vcluster_x_ns_minikube", None, ("local", None), id="loft-vcluster-minikube"),
    pytest.param("gke_p_z_c", None, ("remote", None), id="gke"),
    pytest.param("k3d-dev", None, ("remote", None), id="k3d"),
    pytest.param("vcluster_x_ns_gke", None, ("remote", None), id="vcluster-remote"),
]


@pytest.mark.parametrize(("context", "extension", "expected"), CLASSIFY)
def test_classify(
    context: str, extension: dict[str, Any] | None, expected: tuple[str, str | None]
) -> None:
    c = classify(None, kubeconfig(context, extension))
    assert (c.kind, c.kind_name) == expected
    assert c.context == context


def test_no_kubeconfig_is_remote() -> None:
    assert classify(None, {}) == Cluster("remote", None)


def test_context_flag_missing_from_kubeconfig_is_remote() -> None:
    assert classify("kind-x", kubeconfig("minikube")).kind == "remote"


def image(builder: str = "docker") -> Image:
    return Image("app", "org/app", (), Path("/D"), Path("/"), {}, None, builder, "f", 1, 1)  # type: ignore[arg-type]


KIND, LOCAL, REMOTE = (
    Cluster("kind", "kind-k", "k"),
    Cluster("local", "minikube"),
    Cluster("remote", "gke"),
)
PATHS = [
    pytest.param(False, KIND, None, "kind-load", id="false-kind"),
    pytest.param(False, LOCAL, None, "local-engine", id="false-local"),
    pytest.param(False, REMOTE, None, "own-registry", id="false-remote"),
    pytest.param(True, KIND, None, "local-registry", id="true-kind"),
    pytest.param(True, LOCAL, None, "local-registry", id="true-local"),
    pytest.param(True, REMOTE, True, "local-registry", id="true-remote-even-if-push-allowed"),
    pytest.param(None, KIND, None, "kind-load", id="unset-kind"),
    pytest.param(None, LOCAL, None, "local-engine", id="unset-local"),
    pytest.param(None, REMOTE, None, "local-registry-if-refused", id="unset-remote-unchecked"),
    pytest.param(None, REMOTE, False, "local-registry", id="unset-remote-refused"),
    pytest.param(None, REMOTE, True, "own-registry", id="unset-remote-allowed"),
]


@pytest.mark.parametrize(("enabled", "cluster", "push", "word"), PATHS)
def test_delivery_path(
    enabled: bool | None, cluster: Cluster, push: bool | None, word: str
) -> None:
    assert (
        delivery_path(image(), LocalRegistry(enabled=enabled), cluster, push_allowed=push) == word
    )


@pytest.mark.parametrize("builder", ["kaniko", "custom", "buildkit-incluster"])
def test_ineligible_builders_go_their_own_way(builder: str) -> None:
    assert delivery_path(image(builder), LocalRegistry(enabled=True), KIND) == "own-registry"
