"""watcher/build/kind.py on its own: the ``kind load`` command line, what :func:`load`
returns and raises against the real ``kind`` CLI and the test environment's kind node,
:func:`clusters`, and the reading of kind's words (:func:`loaded_nodes`, :func:`explain`).

devreg's kind path end to end (build, watch, a pod running the loaded image, the
failures as ``devreg build`` prints them) is tests/watcher/kind_cluster_test.py.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookpkg.errors import FatalError
from tests.plugins.testenv import KindCluster, TestEnv
from watcher.build import kind as kind_cli
from watcher.build.backends import BuildCancelled, BuildError

# kind v0.33's own lines (captured from the real CLI against the kind node).
NODE = "devreg-kind-control-plane"
IMAGE_ID = "sha256:53c2e4905f68bc8162b79bbf2f5c94855759942fbfc12330200dee3e60908b60"
LOADING = f'Image: "acme/app:v1" with ID "{IMAGE_ID}" not yet present on node "{NODE}", loading...'
RETAG = (
    f"Image with ID: {IMAGE_ID} already present on the node {NODE} but is missing the tag "
    "docker.io/acme/app:v2. re-tagging..."
)
PRESENT = f'Image: "acme/app:v1" with ID "{IMAGE_ID}" found to be already present on all nodes.'
NO_NODES = 'ERROR: no nodes found for cluster "dev"'
NOT_LOCAL = 'ERROR: image: "acme/app:v1" not present locally'
EXEC_FAILED = (
    'ERROR: command "docker exec --privileged -i dev-control-plane ctr --namespace=k8s.io '
    'images import --all-platforms --digests --snapshotter=overlayfs -" failed with error: '
    "exit status 1"
)


def test_load_argv() -> None:
    assert kind_cli.load_argv("dev", "acme/app:v1") == (
        "kind",
        "load",
        "docker-image",
        "--name",
        "dev",
        "acme/app:v1",
    )
    assert kind_cli.load_argv("dev", "acme/app:v1", kind="/opt/kind")[0] == "/opt/kind"


@pytest.mark.parametrize(
    ("output", "nodes"),
    [
        pytest.param([LOADING], (NODE,), id="imported"),
        pytest.param([RETAG], (NODE,), id="re-tagged"),
        pytest.param([PRESENT], (), id="present-on-all-nodes"),
        pytest.param([], (), id="no-output"),
        pytest.param(
            [
                LOADING,
                LOADING.replace(NODE, "dev-worker"),
                RETAG.replace(NODE, "dev-worker2"),
                LOADING,
            ],
            (NODE, "dev-worker", "dev-worker2"),
            id="several-nodes-each-once-in-order",
        ),
    ],
)
def test_loaded_nodes(output: list[str], nodes: tuple[str, ...]) -> None:
    assert kind_cli.loaded_nodes(output) == nodes


@pytest.mark.parametrize(
    ("output", "known", "expected"),
    [
        pytest.param(
            [NO_NODES],
            None,
            "kind cluster 'dev' not found: kind finds no node container labelled "
            "io.x-k8s.kind.cluster=dev (the context kind-dev names that cluster); create it "
            "(`kind create cluster --name dev`) or use another context",
            id="no-cluster-kind-cannot-list",
        ),
        pytest.param(
            [NO_NODES], (), "; kind knows no cluster", id="no-cluster-and-kind-knows-none"
        ),
        pytest.param(
            [NO_NODES],
            ("devreg-kind", "other"),
            "; kind knows 'devreg-kind', 'other'",
            id="no-cluster-and-kind-knows-others",
        ),
        pytest.param(
            [NOT_LOCAL],
            None,
            "kind cannot load acme/app:v1: the image is not in the local Docker engine",
            id="image-not-in-the-engine",
        ),
        pytest.param(
            [
                EXEC_FAILED,
                "Command Output: Error response from daemon: Container 1f2e is not running",
            ],
            None,
            "node 'dev-control-plane' of kind cluster 'dev' is not running: start it "
            "(`docker start dev-control-plane`) or recreate the cluster",
            id="node-not-running",
        ),
        pytest.param(
            ["Error response from daemon: Container 1f2e is not running"],
            None,
            "a node of kind cluster 'dev' is not running: start it or recreate the cluster",
            id="node-not-running-unnamed",
        ),
        pytest.param(
            [EXEC_FAILED, "Command Output: OCI runtime exec failed: unable to apply caps"],
            None,
            "kind cannot run commands in node 'dev-control-plane' of kind cluster 'dev': this "
            "Docker engine refuses `docker exec --privileged`",
            id="privileged-exec-refused",
        ),
        pytest.param(
            ["ERROR: failed to list nodes: Cannot connect to the Docker daemon"],
            None,
            "kind cannot reach the Docker engine to find the nodes of kind cluster 'dev'",
            id="no-engine",
        ),
        pytest.param(
            ["some progress", "ERROR: first", "ERROR: the last word"],
            None,
            "kind load docker-image into kind cluster 'dev' failed (exit 3): the last word",
            id="otherwise-kinds-last-error",
        ),
        pytest.param(
            ["no error line at all"],
            None,
            "kind load docker-image into kind cluster 'dev' failed (exit 3)",
            id="otherwise-the-exit-code",
        ),
    ],
)
def test_explain(output: list[str], known: tuple[str, ...] | None, expected: str) -> None:
    message = kind_cli.explain("dev", "acme/app:v1", output, 3, known=known)
    if expected.startswith("; "):  # a suffix of the not-found message
        assert message.endswith(expected)
    else:
        assert message.startswith(expected)
    if expected.endswith("(exit 3)"):
        assert message == expected


# ------------------------------------------------------------------------------------
# the real kind against the kind node


@pytest.fixture
def kind_path(kind_cluster: KindCluster, monkeypatch: pytest.MonkeyPatch) -> KindCluster:
    """kind on PATH with the sandbox's docker shim first (tests/plugins/testenv.py
    ``KindCluster.path``), as ``load`` runs ``kind`` from PATH."""
    monkeypatch.setenv("PATH", kind_cluster.path())
    return kind_cluster


@pytest.fixture
def fresh_image(testenv: TestEnv, kind_cluster: KindCluster) -> Iterator[str]:
    """An image the kind node has never seen (the base image with a label of its own,
    so a new image ID); it leaves the engine and the node afterwards, every tag."""
    repository = f"devreg-test/kind-mod-{secrets.token_hex(4)}"
    dockerfile = f"FROM {testenv.base_image}\nLABEL devreg.test={repository}\n"
    subprocess.run(
        [testenv.docker_cli, "build", "-q", "-t", f"{repository}:v1", "-"],
        input=dockerfile.encode(),
        capture_output=True,
        check=True,
    )
    yield repository
    listed = kind_cluster.node_exec("ctr", "--namespace=k8s.io", "images", "ls", "-q").stdout
    mine = [name for name in listed.split() if f"/{repository}:" in name]
    if mine:
        kind_cluster.node_exec("ctr", "--namespace=k8s.io", "images", "rm", *mine)
    tags = subprocess.run(
        [testenv.docker_cli, "images", "--format", "{{.Repository}}:{{.Tag}}", repository],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if tags:
        subprocess.run([testenv.docker_cli, "rmi", *tags], capture_output=True, check=False)


def image_id(testenv: TestEnv, reference: str) -> str:
    return subprocess.run(
        [testenv.docker_cli, "image", "inspect", "--format", "{{.Id}}", reference],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_load_returns_the_nodes_it_imported_into_then_none(
    testenv: TestEnv, kind_path: KindCluster, fresh_image: str
) -> None:
    reference = f"{fresh_image}:v1"
    seen: list[str] = []
    nodes = kind_cli.load(kind_path.name, reference, log=seen.append, cancel=threading.Event())
    assert nodes == (kind_path.node,)
    assert any(f'not yet present on node "{kind_path.node}"' in line for line in seen), seen
    assert kind_path.image_id(reference) == image_id(testenv, reference)

    again: list[str] = []
    assert (
        kind_cli.load(kind_path.name, reference, log=again.append, cancel=threading.Event()) == ()
    )
    assert any("found to be already present on all nodes" in line for line in again), again


def test_a_new_tag_of_an_image_the_node_has_is_a_load_too(
    testenv: TestEnv, kind_path: KindCluster, fresh_image: str
) -> None:
    """kind re-tags instead of importing; the node is still reported (it got the tag)."""
    kind_cli.load(kind_path.name, f"{fresh_image}:v1", log=lambda _: None, cancel=threading.Event())
    subprocess.run(
        [testenv.docker_cli, "tag", f"{fresh_image}:v1", f"{fresh_image}:v2"],
        check=True,
        capture_output=True,
    )
    seen: list[str] = []
    nodes = kind_cli.load(
        kind_path.name, f"{fresh_image}:v2", log=seen.append, cancel=threading.Event()
    )
    assert nodes == (kind_path.node,)
    assert any("but is missing the tag" in line for line in seen), seen
    assert kind_path.image_id(f"{fresh_image}:v2") == image_id(testenv, f"{fresh_image}:v1")


class StalledEngine:
    """A unix socket that accepts Docker's requests and never answers: an engine that
    hangs. ``connected`` is set once a client waits on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connected = threading.Event()
        self.closed_by_client = threading.Event()
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(path))
        self._server.listen()
        self._thread = threading.Thread(target=self._serve, name="stalled-engine", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self._server.accept()
            with conn:
                conn.settimeout(60)  # a guard for a broken test, not a measurement
                conn.recv(65536)  # the client's first request (docker's /_ping)
                self.connected.set()
                while conn.recv(65536):
                    pass
                self.closed_by_client.set()  # EOF: the client process is gone

    def close(self) -> None:
        self._server.close()
        self._thread.join()


def test_cancel_stops_kind_and_its_docker_on_a_stalled_engine(
    kind_path: KindCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling (a newer change) stops kind's whole process group: here kind's
    ``docker`` waits on an engine that never answers, so only the cancel can end it."""
    engine = StalledEngine(tmp_path / "docker.sock")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine.path}")
    cancel = threading.Event()
    threading.Thread(
        target=lambda: engine.connected.wait(60) and cancel.set(), name="canceller", daemon=True
    ).start()
    try:
        with pytest.raises(BuildCancelled):
            kind_cli.load(kind_path.name, "acme/app:v1", log=lambda _: None, cancel=cancel)
        assert cancel.is_set()
        assert engine.closed_by_client.wait(60), "kind's docker still holds the connection"
    finally:
        engine.close()


def test_an_engine_kind_cannot_reach(
    kind_path: KindCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kind asks the engine for the image first, so no engine reads as a missing image;
    the message names DOCKER_HOST. ``clusters`` cannot tell then."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    with pytest.raises(BuildError) as failed:
        kind_cli.load(kind_path.name, "acme/app:v1", log=lambda _: None, cancel=threading.Event())
    assert str(failed.value).startswith("kind cannot load acme/app:v1: the image is not in")
    assert "check DOCKER_HOST" in str(failed.value)
    assert kind_cli.clusters() is None


def test_a_kind_that_is_not_there(tmp_path: Path) -> None:
    missing = str(tmp_path / "kind")
    with pytest.raises(FatalError) as failed:
        kind_cli.load(
            "dev", "acme/app:v1", log=lambda _: None, cancel=threading.Event(), kind=missing
        )
    assert str(failed.value) == (
        f"`{missing}` is not on PATH; it is needed to load images into kind cluster 'dev'"
    )
    assert failed.value.exit_code == 1
    assert kind_cli.clusters(missing) is None


def test_clusters_lists_the_kind_cluster(kind_path: KindCluster) -> None:
    assert kind_path.name in (kind_cli.clusters() or ())
    assert kind_cli.clusters("false") is None  # a kind that fails says nothing
