"""One plan per image, decided once and purely: which way it goes (SPEC §2), the name
it is built and delivered under (§4), who builds it (§6), and the registry's
namespace (§3).

The runtime gathers the facts that need effects — the push-permission check's
answers, the registry devreg reached (its host, and whether devreg deployed it or
the cluster published it, KEP-1755) — in one place (``watcher.daemon.session``) and
hands them to :func:`plan_images`; everything after that reads the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from hookpkg.config import Config, LocalRegistry
from hookpkg.delivery import Cluster, PathWord, delivery_path
from hookpkg.errors import FatalError
from hookpkg.reference import parse_reference, rewrite_repository

Builder = Literal["engine", "in-cluster"]
RegistrySource = Literal["deployed", "kep-1755"]


@dataclass(frozen=True)
class Registry:
    """The local registry devreg reached: the host in image names, and where it came
    from (only a registry devreg deployed has the ``buildkitd`` sidecar)."""

    host: str  # localhost:31234, or a KEP-1755 host
    source: RegistrySource
    namespace: str | None = None  # where devreg deployed it


@dataclass(frozen=True)
class ImagePlan:
    """Where one image goes and under which name."""

    key: str
    path: PathWord  # "local-registry" | "own-registry" | "kind-load" | "local-engine"
    repository: str  # the name it is tagged and delivered under
    builder: Builder = "engine"  # the local Docker engine, or the registry pod's buildkitd
    kind_cluster: str | None = None


def first_paths(config: Config, cluster: Cluster) -> dict[str, PathWord]:
    """Each image's path before any push check: ``local-registry-if-refused`` where the
    check decides (remote cluster, ``enabled`` unset)."""
    return {
        key: delivery_path(image, config.local_registry, cluster)
        for key, image in config.images.items()
    }


def decided_paths(
    first: Mapping[str, PathWord], push_allowed: Mapping[str, bool]
) -> dict[str, PathWord]:
    """The paths once the push check answered. An image whose check could not run at
    all goes to the local registry: that is the watcher's purpose."""
    out: dict[str, PathWord] = {}
    for key, word in first.items():
        if word == "local-registry-if-refused":
            word = "own-registry" if push_allowed.get(key) else "local-registry"
        out[key] = word
    return out


def needs_registry(paths: Mapping[str, PathWord]) -> bool:
    return any(word == "local-registry" for word in paths.values())


def builder_for(path: PathWord, local: LocalRegistry, registry: Registry | None) -> Builder:
    """``localbuild: false`` builds in the ``buildkitd`` sidecar of the registry devreg
    deployed; a KEP-1755 registry has no sidecar, so the local engine builds."""
    in_pod = path == "local-registry" and registry is not None and registry.source == "deployed"
    return "in-cluster" if in_pod and not local.localbuild else "engine"


def plan_images(
    config: Config,
    cluster: Cluster,
    paths: Mapping[str, PathWord],
    registry: Registry | None,
) -> dict[str, ImagePlan]:
    plans: dict[str, ImagePlan] = {}
    for key, image in config.images.items():
        word = paths[key]
        ref = parse_reference(image.image)
        if word == "local-registry":
            if registry is None:
                raise FatalError(
                    f"image {key!r} goes through the local registry, but no registry is connected"
                )
            repository = rewrite_repository(ref, registry.host)
        else:
            repository = ref.repository
        plans[key] = ImagePlan(
            key,
            word,
            repository,
            builder_for(word, config.local_registry, registry),
            cluster.kind_name if word == "kind-load" else None,
        )
    return plans


def needs_engine(plans: Mapping[str, ImagePlan]) -> bool:
    return any(plan.builder == "engine" for plan in plans.values())


def registry_namespace(flag: str | None, local: LocalRegistry, context_namespace: str) -> str:
    """``--namespace``, else ``localRegistry.namespace``, else the context's."""
    return flag or local.namespace or context_namespace
