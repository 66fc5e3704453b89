"""Delivering to a kind cluster: ``kind load docker-image --name <cluster> <image>:<tag>``.

The real ``kind`` CLI (``kind`` on ``PATH``) does the work, exactly as a user
would run it: it finds the cluster's nodes as Docker containers labelled
``io.x-k8s.kind.cluster=<cluster>``, asks each node's containerd whether the
image is already there (``crictl inspecti``), and imports it where it is not
(``docker save`` piped into ``ctr --namespace=k8s.io images import``). So kind
itself decides whether a load is needed: a second load of the same image
imports nothing ("found to be already present on all nodes"), and a node that
lost it (a recreated cluster) gets it again.

kind's failures are turned into messages that say what is wrong and what to
do (:func:`explain`), with kind's own output kept as the tail of the report.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence

from hookpkg.errors import FatalError
from watcher import proc
from watcher.build.backends import BuildCancelled, BuildError

Log = Callable[[str], None]

CLUSTER_LABEL = "io.x-k8s.kind.cluster"
# kind v0.x's own words (pkg/cmd/kind/load/docker-image, pkg/cluster/nodeutils).
_NO_NODES = re.compile(r'no nodes found for cluster "([^"]*)"')
_NOT_LOCAL = re.compile(r'image: "([^"]*)" not present locally')
_LOADING = re.compile(r'not yet present on node "([^"]*)"')
_RETAG = re.compile(r"already present on the node (\S+) but is missing the tag")
_NODE_EXEC = re.compile(r'command "docker exec (?:-\S+ )*([^\s"-][^\s"]*) ')
_NOT_RUNNING = re.compile(r"Container \S+ is not running")
_NO_ENGINE = re.compile(r"Cannot connect to the Docker daemon|failed to list (?:nodes|clusters)")


def load_argv(cluster: str, reference: str, *, kind: str = "kind") -> tuple[str, ...]:
    return (kind, "load", "docker-image", "--name", cluster, reference)


def load(
    cluster: str, reference: str, *, log: Log, cancel: threading.Event, kind: str = "kind"
) -> tuple[str, ...]:
    """Load ``reference`` from the local Docker engine into every node of kind cluster
    ``cluster``; return the nodes it went to (empty: every node had it already)."""
    try:
        done = proc.run(load_argv(cluster, reference, kind=kind), log=log, cancel=cancel)
    except FileNotFoundError:
        raise FatalError(
            f"`{kind}` is not on PATH; it is needed to load images into kind cluster {cluster!r}"
        ) from None
    if done.cancelled:
        raise BuildCancelled()
    if not done.ok:
        known = None
        if _NO_NODES.search("\n".join(done.tail)):
            known = clusters(kind)
        raise BuildError(
            explain(cluster, reference, done.tail, done.returncode, known=known), done.tail
        )
    return loaded_nodes(done.tail)


def loaded_nodes(output: Sequence[str]) -> tuple[str, ...]:
    """The nodes kind imported (or re-tagged) the image into, from its output."""
    nodes: list[str] = []
    for line in output:
        for pattern in (_LOADING, _RETAG):
            m = pattern.search(line)
            if m and m.group(1) not in nodes:
                nodes.append(m.group(1))
    return tuple(nodes)


def clusters(kind: str = "kind") -> tuple[str, ...] | None:
    """The kind clusters kind knows (``kind get clusters``); None when it cannot tell."""
    try:
        done = proc.run((kind, "get", "clusters"), grace=0.5)
    except OSError:
        return None
    if not done.ok:
        return None
    return tuple(
        line.strip()
        for line in done.tail
        if line.strip() and not line.startswith(("No kind clusters", "WARNING", "enabling"))
    )


def explain(
    cluster: str,
    reference: str,
    output: Sequence[str],
    returncode: int,
    *,
    known: Sequence[str] | None = None,
) -> str:
    """What a failed ``kind load docker-image`` means, in one message."""
    text = "\n".join(output)
    where = f"kind cluster {cluster!r}"
    if _NO_NODES.search(text):
        msg = (
            f"{where} not found: kind finds no node container labelled "
            f"{CLUSTER_LABEL}={cluster} (the context kind-{cluster} names that cluster); "
            f"create it (`kind create cluster --name {cluster}`) or use another context"
        )
        if known is not None:
            msg += f"; kind knows {', '.join(repr(c) for c in known) if known else 'no cluster'}"
        return msg
    if m := _NOT_LOCAL.search(text):
        return (
            f"kind cannot load {m.group(1)}: the image is not in the local Docker engine "
            "(it was removed after the build, or kind talks to another engine than devreg: "
            "check DOCKER_HOST and the current Docker context)"
        )
    node_match = _NODE_EXEC.search(text)
    node = node_match.group(1) if node_match else None
    on_node = f"node {node!r} of {where}" if node else f"a node of {where}"
    if _NOT_RUNNING.search(text):
        start = f" (`docker start {node}`)" if node else ""
        return f"{on_node} is not running: start it{start} or recreate the cluster"
    if "unable to apply caps" in text:
        return (
            f"kind cannot run commands in {on_node}: this Docker engine refuses "
            "`docker exec --privileged` (runc: unable to apply caps: operation not "
            "permitted), which kind uses to import images"
        )
    if _NO_ENGINE.search(text):
        return f"kind cannot reach the Docker engine to find the nodes of {where}"
    errors = [line.removeprefix("ERROR: ") for line in output if line.startswith("ERROR: ")]
    detail = f": {errors[-1]}" if errors else ""
    return f"kind load docker-image into {where} failed (exit {returncode}){detail}"
