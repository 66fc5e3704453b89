"""pytest plugin: the real test environment of ``scripts/testenv`` (see docs/testenv.md).

Session fixtures:

* ``testenv``: a frozen :class:`TestEnv` describing the running environment; it starts the
  environment (``scripts/testenv up``) when ``scripts/testenv env`` says it does not run,
  and sets ``DOCKER_HOST``, ``KUBECONFIG``, ``DEVREG_TEST_REGISTRY`` (and the other
  exports) in ``os.environ`` for the session.
* ``docker_client``: a docker SDK client for the environment's Docker Engine.
* ``kube_api_client``: a kubernetes ``ApiClient`` for context ``devreg-test`` (admin).
* ``limited_kube_api_client``: the same for ``devreg-test-limited`` (may not create
  Deployments in ``devreg-limited``).
* ``tinyproxy``: the tinyproxy binary of part ``proxy`` (brought up when it is not);
  tests start their own proxies with it (tests/watcher/proxies.py).
* ``kind_cluster``: the kind cluster of part ``kind`` (:class:`KindCluster`: its name,
  context, node container, the kind binary and the PATH kind runs with).

With ``CI=true`` an environment that cannot start fails the test run; elsewhere the tests
that need it are skipped with the reason.  Tests using these fixtures get the ``testenv``
marker automatically (``-m "not testenv"`` runs the rest).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "testenv"
# A cold `up` builds Kubernetes from source: tens of minutes on 2 cores.
UP_TIMEOUT = float(os.environ.get("DEVREG_TESTENV_UP_TIMEOUT", 45 * 60))

FIXTURES = (
    "testenv",
    "docker_client",
    "kube_api_client",
    "limited_kube_api_client",
    "real_nodes",
    "kind_cluster",
    "tinyproxy",
)


@dataclass(frozen=True)
class TestEnv:
    """What the running environment offers (all from ``scripts/testenv env``)."""

    __test__ = False  # not a test class, despite the name

    docker_host: str  # unix:///var/run/docker.sock
    registry: str  # host:port of the loopback registry (no auth)
    registry_bin: str  # Debian's docker-registry, to start more registries in tests
    kubeconfig: str  # path; contexts below
    context: str  # devreg-test: admin
    limited_context: str  # devreg-test-limited: may not create Deployments in ...
    limited_namespace: str  # ... this namespace (devreg-limited)
    base_image: str  # devreg-test/busybox:latest, FROM scratch with busybox
    registry_image: str  # registry:2.8.1, built locally from Debian's docker-registry
    state_dir: str  # pids, ports, certs, logs of the environment
    docker_cli: str = "/usr/bin/docker"  # the CLI with BuildKit built in
    kube_version: str = ""
    kubectl: str = "kubectl"  # the kubectl of the cluster's release (built with it)
    node_netns: tuple[tuple[str, str], ...] = ()  # (node, network namespace) of netns nodes

    def log(self, name: str) -> Path:
        """The log file of one process (``kube-apiserver``, ``registry``, ``kwok``, ...)."""
        return Path(self.state_dir) / "logs" / f"{name}.log"


def parse_exports(text: str) -> dict[str, str]:
    """``export NAME=value`` lines (shell-quoted values) into a dict."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            env[name] = value
    return env


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"test environment: {reason}", pytrace=False)
    pytest.skip(f"test environment unavailable: {reason}")


def _tail(text: str, n: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def _run_script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


REQUIRED = {
    "DOCKER_HOST": "docker_host",
    "DEVREG_TEST_REGISTRY": "registry",
    "DEVREG_TEST_REGISTRY_BIN": "registry_bin",
    "KUBECONFIG": "kubeconfig",
    "DEVREG_TEST_KUBE_CONTEXT": "context",
    "DEVREG_TEST_KUBE_LIMITED_CONTEXT": "limited_context",
    "DEVREG_TEST_KUBE_LIMITED_NAMESPACE": "limited_namespace",
    "DEVREG_TEST_BASE_IMAGE": "base_image",
    "DEVREG_TEST_REGISTRY_IMAGE": "registry_image",
    "DEVREG_TESTENV_DIR": "state_dir",
    "DEVREG_TEST_KUBECTL": "kubectl",
    "DEVREG_TEST_REAL_NODES": "",  # required; the tests find real nodes through the API
}


def start_testenv() -> dict[str, str]:
    """The exports of the running environment, starting it if needed (raises on failure)."""
    if not SCRIPT.is_file():
        raise RuntimeError(f"{SCRIPT} is missing")
    proc = _run_script("env", timeout=60)
    # Not running, or only some parts (`scripts/testenv up registry`): bring up the rest.
    if proc.returncode != 0 or not all(parse_exports(proc.stdout).get(n) for n in REQUIRED):
        try:
            proc = _run_script("up", timeout=UP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"scripts/testenv up did not finish in {UP_TIMEOUT:.0f}s") from None
        if proc.returncode != 0:
            raise RuntimeError(
                f"scripts/testenv up failed (exit {proc.returncode}):\n{_tail(proc.stderr)}"
            )
    return parse_exports(proc.stdout)


@pytest.fixture(scope="session")
def testenv() -> Iterator[TestEnv]:
    try:
        exported = start_testenv()
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        _unavailable(str(e))
        raise  # unreachable: _unavailable fails or skips
    missing = [name for name in REQUIRED if not exported.get(name)]
    if missing:
        _unavailable(f"scripts/testenv exported no {', '.join(missing)}")
    fields: dict[str, Any] = {field: exported[name] for name, field in REQUIRED.items() if field}
    netns = exported.get("DEVREG_TEST_NODE_NETNS", "")
    env = TestEnv(
        **fields,
        docker_cli=exported.get("DEVREG_TEST_DOCKER_CLI", "/usr/bin/docker"),
        kube_version=exported.get("DEVREG_TEST_KUBE_VERSION", ""),
        node_netns=tuple(
            (node, ns) for node, _, ns in (p.partition("=") for p in netns.split(",") if p)
        ),
    )
    saved = {name: os.environ.get(name) for name in exported}
    os.environ.update(exported)
    try:
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def tinyproxy(testenv: TestEnv) -> str:
    binary = os.environ.get("DEVREG_TEST_TINYPROXY", "")
    if not binary:
        proc = _run_script("up", "proxy", timeout=UP_TIMEOUT)
        binary = parse_exports(proc.stdout).get("DEVREG_TEST_TINYPROXY", "")
        if proc.returncode != 0 or not binary:
            _unavailable(f"scripts/testenv up proxy failed:\n{_tail(proc.stderr)}")
    return binary


@pytest.fixture(scope="session")
def docker_client(testenv: TestEnv) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(base_url=testenv.docker_host)
    try:
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure means the engine is not usable
        _unavailable(f"Docker Engine at {testenv.docker_host} does not answer: {e}")
    yield client
    client.close()


def _kube_client(testenv: TestEnv, context: str) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=testenv.kubeconfig, context=context)


@pytest.fixture(scope="session")
def kube_api_client(testenv: TestEnv) -> Iterator[Any]:
    client = _kube_client(testenv, testenv.context)
    yield client
    client.close()


@pytest.fixture(scope="session")
def limited_kube_api_client(testenv: TestEnv) -> Iterator[Any]:
    client = _kube_client(testenv, testenv.limited_context)
    yield client
    client.close()


@dataclass(frozen=True)
class RealNode:
    """A node with a real kubelet: its ``containerRuntimeVersion`` is ``containerd://…``."""

    name: str
    address: str  # InternalIP
    netns: str | None  # the network namespace it lives in; None: this machine's own

    def run_in(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the node's network namespace (as its loopback sees it)."""
        if self.netns is None:
            return argv
        return ["nsenter", f"--net=/var/run/netns/{self.netns}", *argv]


# The kind node (scripts/testenv part ``kind``) is real too, but a container of its own
# that only the kind tests use (tainted; its loopback is not this machine's): the tests
# that want "every real node" leave it out.
KIND_NODE_LABEL = ("devreg.test/node", "kind")
# The odd nodes are real too, but broken on purpose for the pull probe's tests (tainted:
# scripts/devreg_testenv/nodes.py, Node.odd): they pull nothing from localhost:<nodePort>.
ODD_NODE_LABEL = ("devreg.test/node", "odd")
OTHER_NODE_LABELS = (KIND_NODE_LABEL[1], ODD_NODE_LABEL[1])


def find_real_nodes(api_client: Any, testenv: TestEnv) -> list[RealNode]:
    """The Ready nodes whose runtime is containerd, found through the API as a user would
    (not the kind node, nor the odd ones: ``OTHER_NODE_LABELS``)."""
    from kubernetes import client

    netns = dict(testenv.node_netns)
    found = []
    for node in client.CoreV1Api(api_client).list_node().items:
        runtime = node.status.node_info.container_runtime_version or ""
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        label = (node.metadata.labels or {}).get(KIND_NODE_LABEL[0])
        if runtime.startswith("containerd://") and ready and label not in OTHER_NODE_LABELS:
            address = next(
                (a.address for a in node.status.addresses or [] if a.type == "InternalIP"), ""
            )
            found.append(RealNode(node.metadata.name, address, netns.get(node.metadata.name)))
    return sorted(found, key=lambda n: n.name)


def containerd_name(image: str) -> str:
    """The name containerd gives a Docker image: ``busybox:1`` ->
    ``docker.io/library/busybox:1``, ``devreg-test/x:1`` -> ``docker.io/devreg-test/x:1``."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if rest else f"docker.io/library/{image}"


def _ctr(testenv: TestEnv, node: RealNode, *args: str, stdin: Any = None) -> None:
    sock = Path(testenv.state_dir) / "nodes" / node.name / "containerd.sock"
    done = subprocess.run(
        ["ctr", "--address", str(sock), "--namespace", "k8s.io", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} on {node.name}: {done.stderr.strip()}")


def import_images(testenv: TestEnv, nodes: list[RealNode], *images: str) -> None:
    """Put images of the environment's Docker Engine into every real node's containerd
    (``docker save | ctr images import -``), as scripts/testenv does with its own: the
    nodes pull nothing, so a pod may use them with ``imagePullPolicy`` IfNotPresent (a
    tag other than ``latest``) or Never."""
    env = {**os.environ, "DOCKER_HOST": testenv.docker_host}
    for node in nodes:
        save = subprocess.Popen(
            [testenv.docker_cli, "save", *images], stdout=subprocess.PIPE, env=env
        )
        try:
            _ctr(testenv, node, "images", "import", "-", stdin=save.stdout)
        finally:
            assert save.stdout is not None
            save.stdout.close()
            assert save.wait(60) == 0, f"docker save {' '.join(images)} failed"


def remove_images(testenv: TestEnv, nodes: list[RealNode], *images: str) -> None:
    """Take images that :func:`import_images` put there out of every real node again."""
    for node in nodes:
        _ctr(testenv, node, "images", "rm", *(containerd_name(i) for i in images))


@pytest.fixture(scope="session")
def real_nodes(testenv: TestEnv, kube_api_client: Any) -> list[RealNode]:
    """At least two real nodes, one of them in this machine's network namespace."""
    nodes = find_real_nodes(kube_api_client, testenv)
    if len(nodes) < 2 or not any(n.netns is None for n in nodes):
        _unavailable(f"the cluster has no two Ready real nodes (found {nodes})")
    return nodes


@dataclass(frozen=True)
class KindCluster:
    """The kind cluster of scripts/testenv (part ``kind``): one node, a Docker container
    labelled ``io.x-k8s.kind.cluster=<name>`` with containerd and a kubelet joined to the
    test API server, for the real ``kind`` CLI (docs/testenv.md, "The kind node")."""

    name: str  # devreg-kind
    context: str  # kind-devreg-kind, a context of testenv.kubeconfig (the admin)
    node: str  # devreg-kind-control-plane: the node's container, hostname and Node
    kind: str  # the kind binary (sigs.k8s.io/kind, built by scripts/testenv)
    shim_dir: str  # the `docker` that drops --privileged from `exec` (scripts/kind-path)
    docker_cli: str = "/usr/bin/docker"

    def path(self, base: str | None = None) -> str:
        """A PATH for the real kind: the docker shim first, then kind's directory."""
        rest = os.environ.get("PATH", "") if base is None else base
        return os.pathsep.join([self.shim_dir, str(Path(self.kind).parent), rest])

    def node_exec(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``argv`` run inside the node container."""
        return subprocess.run(
            [self.docker_cli, "exec", self.node, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def image_id(self, reference: str) -> str | None:
        """The id of ``reference`` in the node's containerd (``crictl inspecti``), or None."""
        done = self.node_exec("crictl", "inspecti", reference)
        if done.returncode != 0:
            return None
        return str(json.loads(done.stdout)["status"]["id"])


KIND_EXPORTS = (
    "DEVREG_TEST_KIND_CLUSTER",
    "DEVREG_TEST_KIND_CONTEXT",
    "DEVREG_TEST_KIND_NODE",
    "DEVREG_TEST_KIND_BIN",
    "DEVREG_TEST_KIND_PATH",
)


def _kind_node_ready(api_client: Any, name: str) -> bool:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        node = client.CoreV1Api(api_client).read_node(name)
    except ApiException:
        return False
    runtime = node.status.node_info.container_runtime_version or ""
    ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
    return runtime.startswith("containerd://") and ready


@pytest.fixture(scope="session")
def kind_cluster(testenv: TestEnv, kube_api_client: Any) -> KindCluster:
    """The kind cluster, brought up (``scripts/testenv up kind``) when it does not run."""
    exported = {name: os.environ.get(name, "") for name in KIND_EXPORTS}
    if not all(exported.values()) or not _kind_node_ready(
        kube_api_client, exported["DEVREG_TEST_KIND_NODE"]
    ):
        try:
            proc = _run_script("up", "kind", timeout=UP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _unavailable(f"scripts/testenv up kind did not finish in {UP_TIMEOUT:.0f}s")
        if proc.returncode != 0:
            _unavailable(f"scripts/testenv up kind failed:\n{_tail(proc.stderr)}")
        exported = {name: parse_exports(proc.stdout).get(name, "") for name in KIND_EXPORTS}
        os.environ.update(exported)
    missing = [name for name, value in exported.items() if not value]
    if missing:
        _unavailable(f"scripts/testenv exported no {', '.join(missing)}")
    cluster = KindCluster(
        name=exported["DEVREG_TEST_KIND_CLUSTER"],
        context=exported["DEVREG_TEST_KIND_CONTEXT"],
        node=exported["DEVREG_TEST_KIND_NODE"],
        kind=exported["DEVREG_TEST_KIND_BIN"],
        shim_dir=exported["DEVREG_TEST_KIND_PATH"],
        docker_cli=testenv.docker_cli,
    )
    if not _kind_node_ready(kube_api_client, cluster.node):
        _unavailable(f"the kind node {cluster.node} is not Ready")
    return cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the environment carries the ``testenv`` marker."""
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in FIXTURES):
            item.add_marker(pytest.mark.testenv)
