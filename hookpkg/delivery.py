"""Which way each image reaches the cluster (SPEC §2), decided offline.

The cluster is classified from the kubeconfig alone, as DevSpace does; the
KEP-1755 ConfigMap and the push-permission check need the network, so the
watcher passes their answers in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml

from hookpkg.config import Image, LocalRegistry

ClusterKind = Literal["kind", "local", "remote"]
PathWord = Literal[
    "kind-load", "local-engine", "local-registry", "local-registry-if-refused", "own-registry"
]
_LOCAL_CONTEXTS = ("docker-desktop", "docker-for-desktop", "orbstack", "minikube")


class Cluster(NamedTuple):
    kind: ClusterKind
    context: str | None  # None: no kubeconfig or no current context
    kind_name: str | None = None  # the kind cluster's name for ``kind load``

    def describe(self) -> str:
        ctx = self.context or "no kubeconfig context"
        if self.kind == "kind":
            return f"{ctx} (kind cluster {self.kind_name!r})"
        return f"{ctx} ({'local engine' if self.kind == 'local' else 'remote'})"


def kubeconfig_paths(env: dict[str, str] | os._Environ[str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    value = env.get("KUBECONFIG")
    if value:
        return [Path(p) for p in value.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


@dataclass(frozen=True)
class Kubeconfig:
    """The kubeconfig files merged as kubectl merges them: the first file that names a
    context, cluster or user wins, and the first ``current-context`` wins. Each entry
    keeps the directory of the file that defined it (relative file names in it are
    relative to that file). The one reader of kubeconfig files: the offline
    classification here and the runtime's API client both use it."""

    files: tuple[Path, ...]  # the files that were read
    current: str | None
    contexts: Mapping[str, tuple[dict[str, Any], Path]]
    clusters: Mapping[str, tuple[dict[str, Any], Path]]
    users: Mapping[str, tuple[dict[str, Any], Path]]


class KubeconfigError(Exception):
    """A kubeconfig file that exists but is not a YAML document."""

    def __init__(self, path: Path, error: Exception) -> None:
        super().__init__(f"{path}: the kubeconfig is not valid YAML: {error}")


def merge_kubeconfig(paths: list[Path], *, strict: bool = False) -> Kubeconfig:
    """Read and merge ``paths``; unreadable files are skipped. ``strict``: a file that is
    not valid YAML raises :class:`KubeconfigError` (the runtime), instead of being
    skipped (the offline preview, which must never fail on a kubeconfig)."""
    files: list[Path] = []
    current: str | None = None
    sections: dict[str, dict[str, tuple[dict[str, Any], Path]]] = {
        "contexts": {},
        "clusters": {},
        "users": {},
    }
    for path in paths:
        try:
            if not path.is_file():  # a FIFO or a device named in KUBECONFIG: never block
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        try:
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as e:
            if strict:
                raise KubeconfigError(path, e) from None
            continue
        if not isinstance(data, dict):
            continue
        files.append(path)
        if current is None and data.get("current-context"):
            current = str(data["current-context"])
        for section, by_name in sections.items():
            for entry in data.get(section) or []:
                name = entry.get("name") if isinstance(entry, dict) else None
                if isinstance(name, str):
                    by_name.setdefault(name, (entry, path.parent))
    return Kubeconfig(
        tuple(files), current, sections["contexts"], sections["clusters"], sections["users"]
    )


def read_kubeconfig(paths: list[Path]) -> dict[str, Any]:
    """The merged kubeconfig as one document (what :func:`classify` reads)."""
    merged = merge_kubeconfig(paths)
    doc: dict[str, Any] = {
        "contexts": [entry for entry, _ in merged.contexts.values()],
        "clusters": [entry for entry, _ in merged.clusters.values()],
    }
    if merged.current is not None:
        doc["current-context"] = merged.current
    return doc


def _is_local_context(context: str, cluster_entry: dict[str, Any] | None) -> bool:
    if context in _LOCAL_CONTEXTS:
        return True
    if cluster_entry is not None:
        for ext in (cluster_entry.get("cluster") or {}).get("extensions") or []:
            extension = ext.get("extension") if isinstance(ext, dict) else None
            if isinstance(extension, dict) and extension.get("provider") == "minikube.sigs.k8s.io":
                return True
    for prefix in ("vcluster_", "loft-vcluster_"):
        if prefix in context and (
            context.endswith(("docker-desktop", "docker-for-desktop", "minikube"))
            or "kind-" in context
        ):
            return True
    return context.startswith(("vcluster-docker_", "loft-vcluster-docker_"))


def classify(context: str | None, kubeconfig: dict[str, Any]) -> Cluster:
    name = context or kubeconfig.get("current-context")
    if not name:
        return Cluster("remote", None)
    ctx = next((c for c in kubeconfig.get("contexts", []) if c.get("name") == name), None)
    if ctx is None:
        return Cluster("remote", name)
    if name.startswith("kind-"):
        return Cluster("kind", name, name[len("kind-") :])
    cluster_name = (ctx.get("context") or {}).get("cluster")
    cluster = next(
        (c for c in kubeconfig.get("clusters", []) if c.get("name") == cluster_name), None
    )
    if _is_local_context(name, cluster):
        return Cluster("local", name)
    return Cluster("remote", name)


def classify_cluster(context: str | None = None) -> Cluster:
    """Classify from ``$KUBECONFIG`` (or ``~/.kube/config``); no API call."""
    return classify(context, read_kubeconfig(kubeconfig_paths()))


def delivery_path(
    image: Image, registry: LocalRegistry, cluster: Cluster, *, push_allowed: bool | None = None
) -> PathWord:
    """The path word for one image. ``push_allowed`` is the push-permission
    check's answer (``None`` before it ran)."""
    if not image.eligible:
        return "own-registry"
    if registry.enabled is False:
        return {"kind": "kind-load", "local": "local-engine", "remote": "own-registry"}[
            cluster.kind
        ]  # type: ignore[return-value]
    if registry.enabled is True:
        return "local-registry"
    if cluster.kind == "kind":
        return "kind-load"
    if cluster.kind == "local":
        return "local-engine"
    if push_allowed is None:
        return "local-registry-if-refused"
    return "own-registry" if push_allowed else "local-registry"


def uses_local_registry(word: PathWord) -> bool:
    """Whether the image URL is rewritten (``if-refused`` previews the rewrite)."""
    return word in ("local-registry", "local-registry-if-refused")
