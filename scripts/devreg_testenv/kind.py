"""Part ``kind``: a kind-shaped node, for the real ``kind`` CLI.

``kind load docker-image --name devreg-kind IMAGE`` finds a cluster's nodes as
Docker containers labelled ``io.x-k8s.kind.cluster=devreg-kind`` and runs, in
each, ``containerd config dump`` (the snapshotter), ``crictl inspecti`` (is the
image there already?) and ``ctr --namespace=k8s.io images import …`` through
``docker exec``.  So this part runs one node *as a Docker container*, as kind's
nodes are:

- container and hostname ``devreg-kind-control-plane``, labels
  ``io.x-k8s.kind.cluster=devreg-kind`` and ``io.x-k8s.kind.role=control-plane``;
- image ``devreg-test/kind-node:latest``, assembled here FROM scratch (no pull):
  Debian's containerd, ctr, containerd-shim-runc-v2 and runc with the libraries
  ``ldd`` lists, busybox, the CNI plugins, crictl and the kubelet of the cached
  Go build, and an entrypoint that starts containerd and the kubelet;
- the kubelet joins the test API server as node ``devreg-kind-control-plane``
  (its own client certificate in ``system:nodes``, as nodes.py's), reaching it
  through Docker's bridge (the API server binds 0.0.0.0; the serving
  certificate names ``localhost``, hence ``tls-server-name``);
- tainted ``devreg.test/kind=only:NoSchedule`` and labelled
  ``devreg.test/node=kind``: a pod lands there only when it asks (``nodeName``
  or a toleration), so other tests' pods never do;
- pod networking is a CNI bridge inside the container: pods there run, nobody
  needs to reach them.  The busybox base and the pod sandbox image are imported
  into its containerd.

Adaptations this sandbox forces (docs/testenv.md, "The kind node"): the
container runs with explicit capabilities (``SYS_ADMIN``, ``NET_ADMIN``,
``SYS_PTRACE``; seccomp and AppArmor unconfined) instead of ``--privileged``,
which cannot start here (the capability bounding set lacks CAP_SYS_RESOURCE);
its entrypoint remounts its cgroup hierarchies and ``/proc/sys`` read-write
(a privileged container gets them so).  kind itself runs ``docker exec
--privileged``: ``scripts/kind-path/docker``, first on kind's PATH only, drops
that one flag (its header says why).  kind is ``sigs.k8s.io/kind``, built with
``go install`` into the cache.

Exports: ``DEVREG_TEST_KIND_CONTEXT`` (context ``kind-devreg-kind`` of
``<state>/kubeconfig``: the admin on the test API server),
``DEVREG_TEST_KIND_CLUSTER``, ``DEVREG_TEST_KIND_NODE``, ``DEVREG_TEST_KIND_BIN``
(the kind binary) and ``DEVREG_TEST_KIND_PATH`` (the directory of the docker
shim).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from .common import (
    CACHE,
    K8S_VERSION,
    STATE,
    Part,
    PartError,
    locked,
    log,
    run,
    save_state,
    wait_for,
)
from .controlplane import Kube
from .docker import DOCKER, DOCKER_HOST
from .gobuild import build_all, go_install, k8s_bin_dir
from .images import BASE_IMAGE, BUSYBOX_BIN, image_label, shared_libs
from .nodes import (
    CNI_BIN,
    KUBELET_CGROUP_SETTINGS,
    KUBELET_SANDBOX_SETTINGS,
    OFFLINE_REGISTRIES,
    SANDBOX_IMAGE,
    build_crictl,
    build_sandbox_image,
    cri_plugin_config,
    crictl_bin,
    docker_image_id,
    hosts_toml,
    node_client_cert,
    node_rbac,
    node_ready,
    write_if_changed,
)
from .pki import b64file, pki, write_kubeconfigs

KIND_VERSION = os.environ.get("DEVREG_TESTENV_KIND_VERSION", "v0.33.0")
CLUSTER = "devreg-kind"
NODE = f"{CLUSTER}-control-plane"  # kind's name for a cluster's first node
CONTEXT = f"kind-{CLUSTER}"  # kind's name for its kubeconfig context
NODE_IMAGE = "devreg-test/kind-node:latest"
CLUSTER_LABEL = "io.x-k8s.kind.cluster"  # what kind looks nodes up by
ROLE_LABEL = "io.x-k8s.kind.role"
TAINT = "devreg.test/kind=only:NoSchedule"
NODE_LABEL = "devreg.test/node=kind"
POD_CIDR = "10.244.200.0/24"  # inside the node container only
# The docker shim of kind's PATH (see its header): in the repository, not generated.
SHIM_DIR = Path(__file__).resolve().parent.parent / "kind-path"
PART_NAME = "kind"
# Inside the node container:
CONF_DIR = "/etc/devreg-kind"  # mounted read-only: kubeconfig, CA, kubelet config
LOG_DIR = "/var/log/devreg"  # mounted from <state>/logs/kind
CAPS = ("SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYSLOG")
DEADLINE_READY = 120.0


def kind_bin() -> Path:
    return CACHE / f"kind-{KIND_VERSION}" / "kind"


def state_dir() -> Path:
    return STATE / "kind"


def log_dir() -> Path:
    return STATE / "logs" / "kind"


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run(
        PART_NAME, [DOCKER, *args], env={"DOCKER_HOST": DOCKER_HOST}, check=check, timeout=timeout
    )


# ---------------------------------------------------------------------------------------
# kind (sigs.k8s.io/kind has no replace directives: a plain go install)


def build_kind() -> None:
    if kind_bin().is_file():
        return
    with locked(CACHE / ".build.lock", "build"):
        go_install("kind build", "sigs.k8s.io/kind", KIND_VERSION, kind_bin())


# ---------------------------------------------------------------------------------------
# The node image, FROM scratch


CONTAINERD_CONFIG = """\
# containerd of the kind node (Debian's containerd 1.6), at kind's default paths:
# `kind load` reads the snapshotter from `containerd config dump`.
version = 2
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
]

""" + cri_plugin_config(
    cni_bin="/opt/cni/bin", cni_conf="/etc/cni/net.d", certs="/etc/containerd/certs.d"
)

CRICTL_CONFIG = (
    "runtime-endpoint: unix:///run/containerd/containerd.sock\n"
    "image-endpoint: unix:///run/containerd/containerd.sock\n"
    "timeout: 20\n"
)

CNI_CONFIG = (
    json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": "devreg-kind",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": False,  # no iptables in the node: its pods need not go out
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                }
            ],
        },
        indent=2,
    )
    + "\n"
)

ENTRYPOINT = f"""\
#!/bin/sh
# The kind node's init (under docker-init): containerd, then the kubelet; logs in
# {LOG_DIR} (<state>/logs/kind on the host).  Built by scripts/devreg_testenv/kind.py.
set -eu
# A privileged container gets these read-write; this one has CAP_SYS_ADMIN instead
# (privileged cannot start here), so it remounts them: runc creates the pods'
# cgroups, the kubelet and the CNI bridge write sysctls.
for d in /sys/fs/cgroup/*/; do
    mount -o remount,bind,rw "$d" 2>/dev/null || true
done
mount -o remount,rw /proc/sys
mount --make-rshared /
mkdir -p /var/lib/kubelet /var/log/pods /run/containerd
# a machine id of its own, as kind's entrypoint writes one (the kubelet reports it)
[ -s /etc/machine-id ] || tr -d - </proc/sys/kernel/random/uuid >/etc/machine-id
containerd >>{LOG_DIR}/containerd.log 2>&1 &
i=0
until ctr version >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 300 ]; then
        echo "containerd did not answer within 30 s" >&2
        exit 1
    fi
    sleep 0.1
done
exec kubelet \\
    --config={CONF_DIR}/kubelet.yaml \\
    --kubeconfig={CONF_DIR}/kubeconfig \\
    --hostname-override="$(hostname)" \\
    --node-ip="$(hostname -i | cut -d' ' -f1)" \\
    --node-labels={NODE_LABEL} \\
    --register-with-taints={TAINT} \\
    --v=1 >>{LOG_DIR}/kubelet.log 2>&1
"""

NODE_BINARIES = (
    "/usr/bin/containerd",
    "/usr/bin/ctr",
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/sbin/runc",
)
CNI_PLUGINS = ("bridge", "host-local", "loopback")


def image_inputs() -> list[tuple[str, Path]]:
    """(path in the image, file here) for every binary the image holds."""
    files = [(b, Path(b)) for b in NODE_BINARIES]
    files += [
        ("/usr/local/bin/kubelet", k8s_bin_dir() / "kubelet"),
        ("/usr/local/bin/crictl", crictl_bin()),
        ("/bin/busybox", Path(BUSYBOX_BIN)),
    ]
    files += [(f"/opt/cni/bin/{p}", Path(CNI_BIN) / p) for p in CNI_PLUGINS]
    libs: dict[str, Path] = {}
    for binary in NODE_BINARIES:
        for lib in shared_libs(PART_NAME, binary):
            libs[str(lib)] = lib.resolve()
    files += sorted(libs.items())
    return files


def image_texts() -> dict[str, str]:
    texts = {
        "/etc/containerd/config.toml": CONTAINERD_CONFIG,
        "/etc/crictl.yaml": CRICTL_CONFIG,
        "/etc/cni/net.d/10-devreg-kind.conflist": CNI_CONFIG,
        "/usr/local/bin/devreg-kind-init": ENTRYPOINT,
        "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "/etc/group": "root:x:0:\n",
        "/kind/version": f"{K8S_VERSION}\n",  # as in kind's node images
    }
    for host in OFFLINE_REGISTRIES:
        texts[f"/etc/containerd/certs.d/{host}/hosts.toml"] = hosts_toml(host)
    return texts


DOCKERFILE = """\
# The kind-shaped node of devreg's test environment, FROM scratch (nothing is pulled):
# Debian's containerd, runc and CNI plugins, busybox, crictl and the kubelet of the
# cached Go build.  Built by scripts/devreg_testenv/kind.py.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin
ENTRYPOINT ["/usr/local/bin/devreg-kind-init"]
"""


def image_digest(inputs: list[tuple[str, Path]], texts: dict[str, str]) -> str:
    """What the image is made of: each file's place, size and mtime (the binaries are
    large; a new build or package gives another mtime), the texts, the Dockerfile."""
    h = hashlib.sha256(DOCKERFILE.encode())
    for dest, src in inputs:
        st = src.stat()
        h.update(f"{dest}\0{src}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for dest, text in sorted(texts.items()):
        h.update(f"{dest}\0{text}\0".encode())
    h.update(" ".join(sorted(busybox_applets())).encode())
    return h.hexdigest()


def busybox_applets() -> list[str]:
    return [a for a in run(PART_NAME, [BUSYBOX_BIN, "--list"]).stdout.split() if a != "busybox"]


def build_node_image() -> str:
    """Build the node image when its inputs changed; return its input digest."""
    inputs = image_inputs()
    texts = image_texts()
    for _, src in inputs:
        if not src.is_file():
            raise PartError(PART_NAME, f"{src} is missing (for the node image)")
    digest = image_digest(inputs, texts)
    if image_label(NODE_IMAGE, "devreg.testenv.hash") == digest:
        return digest
    log(f"kind: building {NODE_IMAGE}")
    ctx = STATE / "images" / "kind-node"
    shutil.rmtree(ctx, ignore_errors=True)
    root = ctx / "rootfs"
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "usr/local/bin",
        "opt/cni/bin",
        "etc/cni/net.d",
        "root",
        "tmp",
        "run",
        "var/lib/containerd",
        "var/lib/kubelet",
        "var/log/pods",
        LOG_DIR.lstrip("/"),
        CONF_DIR.lstrip("/"),
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    for dest, src in inputs:
        target = root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    for applet in busybox_applets():
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    for dest, text in texts.items():
        target = root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (root / "usr/local/bin/devreg-kind-init").chmod(0o755)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    run(
        PART_NAME,
        [DOCKER, "build", "--label", f"devreg.testenv.hash={digest}", "-t", NODE_IMAGE, str(ctx)],
        env={"DOCKER_HOST": DOCKER_HOST, "DOCKER_BUILDKIT": "1"},
        log_path=STATE / "logs" / "images.log",
        timeout=600,
    )
    shutil.rmtree(ctx, ignore_errors=True)  # 200 MB of copies: the image has them
    return digest


# ---------------------------------------------------------------------------------------
# The node's identity and settings (mounted read-only at CONF_DIR)


def bridge_gateway() -> str:
    """This machine's address on Docker's default bridge, as the container sees it."""
    out = docker("network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}").stdout
    for entry in json.loads(out) or []:
        if entry.get("Gateway"):
            return str(entry["Gateway"])
    raise PartError(
        PART_NAME, "Docker's bridge network has no gateway", [DOCKER, "network", "inspect"]
    )


def node_kubeconfig(api_port: int) -> str:
    crt, key = node_client_cert(NODE, f"kind ({NODE})")
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "devreg-test",
                "cluster": {
                    "certificate-authority-data": b64file(pki() / "ca.crt"),
                    "server": f"https://{bridge_gateway()}:{api_port}",
                    "tls-server-name": "localhost",  # a name the serving certificate holds
                },
            }
        ],
        "users": [
            {
                "name": NODE,
                "user": {
                    "client-certificate-data": b64file(crt),
                    "client-key-data": b64file(key),
                },
            }
        ],
        "contexts": [{"name": "node", "context": {"cluster": "devreg-test", "user": NODE}}],
        "current-context": "node",
    }
    return json.dumps(cfg, indent=2) + "\n"


def kubelet_config() -> str:
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": f"{CONF_DIR}/ca.crt"},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        **KUBELET_CGROUP_SETTINGS,
        **KUBELET_SANDBOX_SETTINGS,
    }
    return json.dumps(cfg, indent=2) + "\n"


def write_node_config(api_port: int) -> str:
    """The files of CONF_DIR; returns their digest (a change recreates the container)."""
    d = state_dir() / "config"
    files = {
        "kubeconfig": node_kubeconfig(api_port),
        "kubelet.yaml": kubelet_config(),
        "ca.crt": (pki() / "ca.crt").read_text(),
    }
    h = hashlib.sha256()
    for name, text in sorted(files.items()):
        write_if_changed(d / name, text)
        h.update(f"{name}\0{text}\0".encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# The container


def inspect_node() -> dict[str, Any] | None:
    done = docker("container", "inspect", NODE, check=False)
    if done.returncode != 0:
        return None
    found = json.loads(done.stdout)
    return dict(found[0]) if found else None


def node_running(info: dict[str, Any] | None) -> bool:
    return bool(info and info.get("State", {}).get("Running"))


def run_argv() -> list[str]:
    """``docker run`` of the node container (without the label of its inputs' digest)."""
    return [
        "run",
        "--detach",
        "--init",  # docker-init reaps the containerd shims that outlive their parents
        "--name",
        NODE,
        "--hostname",
        NODE,
        "--label",
        f"{CLUSTER_LABEL}={CLUSTER}",
        "--label",
        f"{ROLE_LABEL}=control-plane",
        "--label",
        f"devreg.testenv.dir={STATE}",
        # Not --privileged (it cannot start here): the capabilities a kind node uses.
        *[arg for cap in CAPS for arg in ("--cap-add", cap)],
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "apparmor=unconfined",
        # the kubelet's OOM watcher reads the kernel log (a privileged node sees it)
        "--device",
        "/dev/kmsg",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/tmp",
        # overlayfs snapshots cannot live on the container's own overlay root
        "--volume",
        "/var/lib/containerd",
        "--volume",
        f"{state_dir() / 'config'}:{CONF_DIR}:ro",
        "--volume",
        f"{log_dir()}:{LOG_DIR}",
        NODE_IMAGE,
    ]


def run_node(config_digest: str) -> None:
    log_dir().mkdir(parents=True, exist_ok=True)
    argv = run_argv()
    argv[-1:-1] = ["--label", f"devreg.testenv.config={config_digest}"]
    log(f"kind: starting the node container {NODE}")
    docker(*argv)


def node_ctr(
    *args: str, stdin: Any = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOCKER, "exec", "-i", NODE, "ctr", "--namespace=k8s.io", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "DOCKER_HOST": DOCKER_HOST},
    )


def import_images() -> None:
    """The busybox base and the pod sandbox image, into the node's containerd (as kind
    would load them), when it lacks their image ids."""
    # crictl lists image ids (``ctr images ls -q`` lists names: it never matched).
    have = set(
        run(
            PART_NAME,
            [DOCKER, "exec", NODE, "crictl", "images", "-q"],
            env={"DOCKER_HOST": DOCKER_HOST},
            check=False,
        ).stdout.split()
    )
    images = (BASE_IMAGE, SANDBOX_IMAGE)
    missing = [img for img in images if docker_image_id(img) not in have]
    if not missing:
        return
    log(f"kind: importing {', '.join(missing)} into {NODE}")
    save = subprocess.Popen(
        [DOCKER, "save", *missing],
        stdout=subprocess.PIPE,
        env={**os.environ, "DOCKER_HOST": DOCKER_HOST},
    )
    try:
        ctr = node_ctr("images", "import", "--snapshotter=overlayfs", "-", stdin=save.stdout)
    finally:
        assert save.stdout is not None
        save.stdout.close()
        save.wait(60)
    if save.returncode != 0 or ctr.returncode != 0:
        raise PartError(
            PART_NAME,
            f"importing {', '.join(missing)} into {NODE} failed",
            ["ctr", "import"],
            ctr.stderr,
        )


def add_context(state: dict[str, Any], api_port: int) -> None:
    contexts: dict[str, list[str]] = state.setdefault("kubeconfig_contexts", {})
    if contexts.get(CONTEXT) != ["devreg-admin", "default"]:
        contexts[CONTEXT] = ["devreg-admin", "default"]
        save_state(state)
    write_kubeconfigs(api_port, contexts)


def up_kind(state: dict[str, Any]) -> None:
    build_all()  # the kubelet
    build_crictl()
    build_kind()
    build_sandbox_image()
    api_port = int(state["ports"]["kube-apiserver"])
    kube = Kube(api_port)
    node_rbac(kube)  # system:node for group system:nodes (nodes.py; no Node authorizer)
    t0 = time.monotonic()
    image_digest_ = build_node_image()
    config_digest = hashlib.sha256(
        "\0".join([image_digest_, write_node_config(api_port), *run_argv()]).encode()
    ).hexdigest()
    state["kind_owner"] = True  # from here on, `down kind` has something to undo
    save_state(state)
    info = inspect_node()
    labels = (info or {}).get("Config", {}).get("Labels") or {}
    if info is not None and (
        not node_running(info) or labels.get("devreg.testenv.config") != config_digest
    ):
        owner = labels.get("devreg.testenv.dir")
        if owner and owner != str(STATE) and Path(owner, "state.json").exists():
            raise PartError(
                PART_NAME,
                f"the environment in {owner} runs the kind node {NODE}; take it down first "
                f"(DEVREG_TESTENV_DIR={owner} scripts/testenv down kind)",
            )
        log(f"kind: replacing the node container {NODE} (stopped, or its inputs changed)")
        docker("rm", "--force", "--volumes", NODE, check=False)
        info = None
    if info is None:
        # The Node object of an earlier container reads Ready until the node controller
        # notices: forget it, so Ready below is the new kubelet's.
        kube.request("DELETE", f"/api/v1/nodes/{NODE}")
        run_node(config_digest)
    add_context(state, api_port)

    def alive() -> bool:
        return node_running(inspect_node())

    wait_for(
        PART_NAME,
        "containerd answering in the node container",
        lambda: node_ctr("version", timeout=10).returncode == 0,
        60,
        alive=alive,
        command=[DOCKER, "exec", NODE, "ctr", "version"],
        log_path=log_dir() / "containerd.log",
    )
    import_images()
    wait_for(
        PART_NAME,
        f"node {NODE} Ready",
        lambda: node_ready(kube, NODE),
        DEADLINE_READY,
        alive=alive,
        command=[DOCKER, "logs", NODE],
        log_path=log_dir() / "kubelet.log",
    )
    log(f"kind: node {NODE} Ready ({time.monotonic() - t0:.1f}s)")


def down_kind(state: dict[str, Any]) -> None:
    """Remove the container (and its volume), the Node object and its pods' records,
    the context, the logs and configuration; the images stay (a cache, as the others).
    Only an environment that brought the node up takes it down (its name is fixed)."""
    if not state.get("kind_owner"):
        return
    info = inspect_node()
    labels = (info or {}).get("Config", {}).get("Labels") or {}
    if info is not None and labels.get("devreg.testenv.dir") in (None, str(STATE)):
        log(f"kind: removing the node container {NODE}")
        docker("rm", "--force", "--volumes", NODE, check=False)
    api_port = state["ports"].get("kube-apiserver")
    if api_port and (pki() / "admin.crt").exists():
        with contextlib.suppress(OSError, ValueError):
            kube = Kube(int(api_port))
            kube.request("DELETE", f"/api/v1/nodes/{NODE}")
            delete_pods_on_node(kube)
    contexts = state.get("kubeconfig_contexts") or {}
    if CONTEXT in contexts:
        del contexts[CONTEXT]
        if api_port and (STATE / "kubeconfig").exists():
            write_kubeconfigs(int(api_port), contexts)
    shutil.rmtree(state_dir(), ignore_errors=True)
    shutil.rmtree(log_dir(), ignore_errors=True)
    state.pop("kind_owner", None)
    save_state(state)


def delete_pods_on_node(kube: Kube) -> None:
    """Pods bound to the node would stay Terminating forever without its kubelet."""
    status, body = kube.request("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}")
    if status != 200:
        return
    for pod in body.get("items", []):
        meta = pod["metadata"]
        kube.request(
            "DELETE",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}?gracePeriodSeconds=0",
        )


# ---------------------------------------------------------------------------------------
# The part


def kind_problems(state: dict[str, Any]) -> list[str]:
    problems = []
    if not kind_bin().is_file():
        problems.append(f"kind is not built ({kind_bin()})")
    try:
        info = inspect_node()
    except PartError as e:
        return [*problems, e.message]
    if not node_running(info):
        problems.append(f"the node container {NODE} is not running")
        return problems
    api_port = state["ports"].get("kube-apiserver")
    try:
        ready = bool(api_port) and node_ready(Kube(int(api_port)), NODE)
    except (OSError, ValueError):
        ready = False
    if not ready:
        problems.append(f"node {NODE} is not Ready")
    return problems


def kind_exports(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("DEVREG_TEST_KIND_CONTEXT", CONTEXT),
        ("DEVREG_TEST_KIND_CLUSTER", CLUSTER),
        ("DEVREG_TEST_KIND_NODE", NODE),
        ("DEVREG_TEST_KIND_BIN", str(kind_bin())),
        ("DEVREG_TEST_KIND_PATH", str(SHIM_DIR)),
    ]


def kind_memory(state: dict[str, Any]) -> list[tuple[str, list[int]]]:
    """The node container's processes: docker-init and everything under it (containerd,
    the kubelet, the shims and the pods)."""
    info = inspect_node()
    pid = int((info or {}).get("State", {}).get("Pid") or 0)
    return [(f"kind node {NODE} (containerd, kubelet, pods)", [pid] if pid else [])]


PART = Part(
    up_kind,
    kind_problems,
    kind_exports,
    needs=("images", "kube"),
    down=down_kind,
    memory=kind_memory,
)
