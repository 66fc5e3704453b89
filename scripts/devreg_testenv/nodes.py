"""Part ``nodes``: real Kubernetes nodes (kubelet + containerd + kube-proxy + CNI).

Two nodes, as the seed's path needs them (docs/testenv.md, "Real nodes"):

- ``devreg-node-0`` lives in this machine's own network namespace, so
  ``localhost:<nodePort>`` answers here, as on minikube, k3s or Docker Desktop;
- ``devreg-node-1`` lives in a network namespace of its own (``devreg-node-1``),
  with its own loopback, containerd and kube-proxy: a NodePort on its
  ``localhost`` is its own kube-proxy's rule, and a pod there pulls
  ``localhost:<nodePort>/…`` through that loopback.

Both hang off one bridge, ``devreg-br`` (10.200.0.0/24; the host side,
10.200.0.1, is node 0's address), and each node's pods get a /24 of
10.244.0.0/16 on a CNI bridge of the node's own; routes through the bridge
join the pod networks.  Everything runs from Debian packages (containerd 1.6,
runc, the CNI plugins, conntrack, iptables) and the cached Go build (kubelet,
kube-proxy from the control plane's wrapper module; crictl from
sigs.k8s.io/cri-tools).  The test images (the busybox base, the registry, the
pod sandbox image) are imported into every node's containerd from the local
Docker Engine: nothing is pulled.

Settings this sandbox forces (see ../shared notes, "A real node"): containerd's
CRI plugin with ``restrict_oom_score_adj`` (lowering oom_score_adj is
forbidden here), kubelet on cgroup v1 with ``cgroupsPerQOS: false``, no
node-allocatable enforcement, swap allowed.

A node is real when its ``status.nodeInfo.containerRuntimeVersion`` starts with
``containerd://``; tests find real nodes that way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    CACHE,
    STATE,
    Part,
    PartError,
    apt_install,
    log,
    port_for,
    proc_alive,
    proc_cmdline,
    process_gone,
    run,
    save_state,
    start_process,
    stop_process,
    wait_for,
)
from .controlplane import Kube
from .docker import DOCKER, DOCKER_HOST, docker_api
from .gobuild import build_all, go_install, k8s_bin_dir
from .images import BASE_IMAGE, REGISTRY_IMAGE, build_image
from .pki import b64file, pki, sign

NODE_NET = "10.200.0"  # the bridge joining the nodes: .1 is this machine (node 0)
BRIDGE = "devreg-br"
POD_CIDR = "10.244.0.0/16"
SANDBOX_IMAGE = "devreg-test/pause:latest"
FORWARD_CHAIN = "DEVREG-TESTENV-FWD"
NETNS_DIR = Path("/var/run/netns")
# A "laptop" away from the cluster: a network namespace on the bridge with no node in
# it, so no NodePort answers on its loopback; devreg run there reaches the registry only
# through its port-forward (tests start a Docker Engine of their own in it).
AWAY_NETNS = "devreg-away"
AWAY_VETH = "devreg-vaway"
AWAY_IP = "10.200.0.100"
OFFLINE_REGISTRIES = ("docker.io", "ghcr.io", "quay.io", "gcr.io", "registry.k8s.io")
OFFLINE_SERVER = "http://127.0.0.1:9"  # discard: nothing listens there
ROUTE_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")
OWNER_FILE = Path("/run/devreg-testenv/nodes-owner")
PACKAGES = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "conntrack",
    "iptables",
    "iproute2",
    "nftables",  # kube-proxy's nftables mode (the odd node devreg-node-3)
)
CNI_BIN = "/usr/lib/cni"
REAL_LABEL = "devreg.test/node"
CRICTL_VERSION = os.environ.get("DEVREG_TESTENV_CRICTL_VERSION", "v1.34.0")
EXTRA_IMAGES: tuple[str, ...] = ()


@dataclass(frozen=True)
class Node:
    name: str
    index: int
    netns: str | None  # None: this machine's own network namespace
    # An "odd" node is broken on purpose, the way real clusters break the pull from
    # localhost:<nodePort> (issue 14): tainted ODD_TAINT=<odd>:NoSchedule so that no
    # pod lands there unless a test untaints it; labelled REAL_LABEL=odd.
    #   ipv6-localhost: its containerd resolves localhost to ::1 only (a private
    #     /etc/hosts in a mount namespace of its own), where node ports do not answer;
    #   nftables: its kube-proxy runs in nftables mode, which serves no node port on
    #     127.0.0.1.
    odd: str | None = None

    @property
    def proxy_mode(self) -> str:
        return "nftables" if self.odd == "nftables" else "iptables"

    @property
    def hosts_file(self) -> Path | None:
        """The /etc/hosts its containerd sees, when not this machine's."""
        return self.dir / "hosts" if self.odd == "ipv6-localhost" else None

    @property
    def ip(self) -> str:
        return f"{NODE_NET}.1" if self.netns is None else f"{NODE_NET}.{10 + self.index}"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def dir(self) -> Path:
        return STATE / "nodes" / self.name

    @property
    def sock(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def cni_bridge(self) -> str:
        return f"devreg-cni{self.index}"

    def netns_prefix(self) -> list[str]:
        """Enter only the network namespace: mounts stay shared with the kubelet's."""
        if self.netns is None:
            return []
        return ["nsenter", f"--net={NETNS_DIR / self.netns}"]

    def proc(self, what: str) -> str:
        return f"{what}-{self.name}"


NODES = (
    Node("devreg-node-0", 0, None),
    Node("devreg-node-1", 1, "devreg-node-1"),
    Node("devreg-node-2", 2, "devreg-node-2", odd="ipv6-localhost"),
    Node("devreg-node-3", 3, "devreg-node-3", odd="nftables"),
)
ODD_TAINT = "devreg.test/odd"
# localhost to ::1 only, as on the k3d node of devspace-sh/devspace#2852
IPV6_LOCALHOST_HOSTS = "# devreg-node-2: localhost is IPv6 only here\n::1 localhost\n"


# ---------------------------------------------------------------------------------------
# Network: one bridge for the nodes, a namespace per node that has one


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("nodes (network)", ["ip", *args], check=check)


def link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip", *(["-n", netns] if netns else []), "link", "show", name]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("nodes (network)", ["iptables", "-w", "5", *args], check=check)


def attach(netns: str, veth: str, address: str) -> None:
    """A network namespace on the nodes' bridge: ``eth0`` at ``address``, loopback up."""
    if not (NETNS_DIR / netns).exists():
        ip("netns", "add", netns)
    if not link_exists(veth):
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    ip("link", "set", veth, "master", BRIDGE, "up")
    ip("-n", netns, "addr", "replace", f"{address}/24", "dev", "eth0")
    ip("-n", netns, "link", "set", "eth0", "up")
    ip("-n", netns, "link", "set", "lo", "up")
    ip("-n", netns, "route", "replace", "default", "via", f"{NODE_NET}.1")


def network_up() -> None:
    if not link_exists(BRIDGE):
        ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "replace", f"{NODE_NET}.1/24", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
    for node in NODES:
        if node.netns is not None:
            attach(node.netns, f"devreg-v{node.index}", node.ip)
            run("nodes (network)", [*node.netns_prefix(), "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            ip("route", "replace", node.pod_cidr, "via", node.ip)
    attach(AWAY_NETNS, AWAY_VETH, AWAY_IP)
    # Docker sets the FORWARD policy to DROP, and br_netfilter sends bridged frames
    # through it: let the nodes' and the pods' traffic pass (one chain of ours).
    if iptables("-n", "-L", FORWARD_CHAIN, check=False).returncode != 0:
        iptables("-N", FORWARD_CHAIN)
    iptables("-F", FORWARD_CHAIN)
    for flag in ("-i", "-o"):
        iptables("-A", FORWARD_CHAIN, flag, BRIDGE, "-j", "ACCEPT")
    for flag in ("-s", "-d"):
        iptables("-A", FORWARD_CHAIN, flag, POD_CIDR, "-j", "ACCEPT")
    if iptables("-C", "FORWARD", "-j", FORWARD_CHAIN, check=False).returncode != 0:
        iptables("-I", "FORWARD", "1", "-j", FORWARD_CHAIN)


def remove_kube_chains() -> None:
    """The kubelet's own chains (KUBE-FIREWALL, canaries, the hint) in this machine's
    namespace: kube-proxy --cleanup leaves them.  A namespace of a node goes whole."""
    for tool in ("iptables", "ip6tables"):
        saved = run("nodes (network)", [f"{tool}-save"], check=False).stdout
        table = ""
        jumps: list[tuple[str, list[str]]] = []
        chains: list[tuple[str, str]] = []
        for line in saved.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":KUBE-"):
                chains.append((table, line[1:].split()[0]))
            elif line.startswith("-A ") and " -j KUBE-" in line:
                rule = line.split()
                if not rule[1].startswith("KUBE-"):
                    jumps.append((table, ["-D", *rule[1:]]))
        for table, rule in jumps:
            run("nodes (network)", [tool, "-w", "5", "-t", table, *rule], check=False)
        for op in ("-F", "-X"):
            for table, chain in chains:
                run("nodes (network)", [tool, "-w", "5", "-t", table, op, chain], check=False)


def network_down() -> None:
    if (NETNS_DIR / AWAY_NETNS).exists():
        ip("netns", "del", AWAY_NETNS, check=False)
    if link_exists(AWAY_VETH):
        ip("link", "del", AWAY_VETH, check=False)
    for node in NODES:
        if node.netns and (NETNS_DIR / node.netns).exists():
            ip("netns", "del", node.netns, check=False)
        for name in (f"devreg-v{node.index}", node.cni_bridge):
            if link_exists(name):
                ip("link", "del", name, check=False)
    if link_exists(BRIDGE):
        ip("link", "del", BRIDGE, check=False)
    while iptables("-D", "FORWARD", "-j", FORWARD_CHAIN, check=False).returncode == 0:
        pass
    if iptables("-n", "-L", FORWARD_CHAIN, check=False).returncode == 0:
        iptables("-F", FORWARD_CHAIN, check=False)
        iptables("-X", FORWARD_CHAIN, check=False)


# ---------------------------------------------------------------------------------------
# Per-node files: certificate, kubeconfig, containerd, CNI, kubelet, kube-proxy


def node_cert(node: Node) -> tuple[Path, Path]:
    return node_client_cert(node.name, f"nodes ({node.name})")


def node_client_cert(name: str, part: str) -> tuple[Path, Path]:
    """A client certificate in system:nodes, as the kubelet's bootstrap would get
    (also for the kind node, kind.py)."""
    d = pki()
    crt, key = d / f"node-{name}.crt", d / f"node-{name}.key"
    if crt.exists() and key.exists():
        return crt, key
    sign(part, f"node-{name}", f"/O=system:nodes/CN=system:node:{name}", "clientAuth")
    return crt, key


def node_kubeconfig(node: Node, api_port: int) -> str:
    """The node's kubeconfig: the API server on loopback, or through the bridge."""
    crt, key = node_cert(node)
    cluster: dict[str, Any] = {"certificate-authority-data": b64file(pki() / "ca.crt")}
    if node.netns is None:
        cluster["server"] = f"https://127.0.0.1:{api_port}"
    else:
        cluster["server"] = f"https://{NODE_NET}.1:{api_port}"
        cluster["tls-server-name"] = "localhost"  # a name the serving certificate holds
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devreg-test", "cluster": cluster}],
        "users": [
            {
                "name": node.name,
                "user": {
                    "client-certificate-data": b64file(crt),
                    "client-key-data": b64file(key),
                },
            }
        ],
        "contexts": [{"name": "node", "context": {"cluster": "devreg-test", "user": node.name}}],
        "current-context": "node",
    }
    return json.dumps(cfg, indent=2) + "\n"


def away_kubeconfig_path() -> Path:
    return STATE / "away.kubeconfig"


def away_kubeconfig(api_port: int) -> str:
    """The admin's kubeconfig as seen from the away namespace: the API server through
    the bridge (the serving certificate names ``localhost``, not the bridge address)."""
    cfg = json.loads((STATE / "kubeconfig").read_text())
    for cluster in cfg["clusters"]:
        cluster["cluster"]["server"] = f"https://{NODE_NET}.1:{api_port}"
        cluster["cluster"]["tls-server-name"] = "localhost"
    return json.dumps(cfg, indent=2) + "\n"


def cri_plugin_config(*, cni_bin: str, cni_conf: str, certs: str) -> str:
    """containerd's CRI plugin as every test node runs it (also the kind node's)."""
    return f"""\
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/{SANDBOX_IMAGE}"
  # This sandbox forbids lowering oom_score_adj: without this every pod sandbox
  # fails with "runc create failed: can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    # hosts.toml per registry host (see OFFLINE_REGISTRIES)
    config_path = "{certs}"
"""


def containerd_config(node: Node) -> str:
    d = node.dir
    return f"""\
# containerd of {node.name} (its own root, state and socket; Debian's containerd 1.6)
version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
]

[grpc]
  address = "{node.sock}"

[ttrpc]
  address = "{node.sock}.ttrpc"

[debug]
  address = "{d}/containerd-debug.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"

""" + cri_plugin_config(cni_bin=CNI_BIN, cni_conf=f"{d}/cni/net.d", certs=f"{d}/certs.d")


def registry_hosts(node: Node) -> dict[Path, str]:
    """containerd's hosts.toml for the public registries: their server is a closed
    port on loopback, so a pull that would go out (an image missing from the node)
    fails at once, here, instead of leaving the machine (nothing can be pulled here,
    and these machines send nothing but package-registry traffic out).  Hosts without
    a file, such as ``localhost:<nodePort>``, keep containerd's defaults (plain HTTP
    for localhost)."""
    return {
        node.dir / "certs.d" / host / "hosts.toml": hosts_toml(host) for host in OFFLINE_REGISTRIES
    }


def hosts_toml(host: str) -> str:
    """containerd's hosts.toml sending ``host``'s pulls to a closed loopback port."""
    return (
        f"# {host}: nothing is pulled from outside in the test environment\n"
        f'server = "{OFFLINE_SERVER}"\n\n'
        # containerd 1.6 refuses a file without a host table ("invalid `host` tree")
        f'[host."{OFFLINE_SERVER}"]\n  capabilities = ["pull", "resolve"]\n'
    )


def cni_config(node: Node) -> str:
    conf = {
        "cniVersion": "0.4.0",
        "name": f"devreg-{node.name}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.cni_bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node.dir / "cni" / "ipam"),
                    "ranges": [[{"subnet": node.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def kubelet_config(node: Node, healthz_port: int) -> str:
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki() / "ca.crt")},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{node.sock}",
        **KUBELET_CGROUP_SETTINGS,
        "podLogsDir": str(node.dir / "pod-logs"),
        **KUBELET_SANDBOX_SETTINGS,
    }
    if node.odd:
        cfg["registerWithTaints"] = [{"key": ODD_TAINT, "value": node.odd, "effect": "NoSchedule"}]
    return json.dumps(cfg, indent=2) + "\n"


# Kubelet settings of every real node, the kind node's too (kind.py).
KUBELET_CGROUP_SETTINGS: dict[str, Any] = {
    # cgroup v1 and this sandbox's limits (see the module docstring)
    "cgroupDriver": "cgroupfs",
    "failCgroupV1": False,
    "failSwapOn": False,
    "cgroupsPerQOS": False,
    "enforceNodeAllocatable": [],
}
KUBELET_SANDBOX_SETTINGS: dict[str, Any] = {
    "serializeImagePulls": False,
    # The imported test images must stay: no image garbage collection, and no
    # eviction because the shared disk of a test machine runs fuller than a node's.
    "imageGCHighThresholdPercent": 100,
    "imageGCLowThresholdPercent": 99,
    "evictionHard": {
        "memory.available": "1Mi",
        "nodefs.available": "1%",
        "imagefs.available": "1%",
    },
    "nodeStatusReportFrequency": "10s",
    "syncFrequency": "10s",
    "fileCheckFrequency": "10s",
    "registerNode": True,
    "resolvConf": "/etc/resolv.conf",
}


def kube_proxy_config(node: Node, healthz_port: int, metrics_port: int) -> str:
    cfg = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(node.dir / "kubeconfig")},
        "hostnameOverride": node.name,
        "mode": node.proxy_mode,
        "clusterCIDR": POD_CIDR,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # nf_conntrack_max is not writable from a network namespace: leave it alone.
        "conntrack": {"maxPerCore": 0, "min": 0},
        "iptables": {"localhostNodePorts": True},
    }
    return json.dumps(cfg, indent=2) + "\n"


def write_if_changed(path: Path, text: str) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)
    return True


# ---------------------------------------------------------------------------------------
# Images: the test images in every node's containerd (nothing is pulled)


def crictl(node: Node, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(
        f"nodes ({node.name})",
        [str(crictl_bin()), "--runtime-endpoint", f"unix://{node.sock}", "--timeout", "20s", *args],
        check=check,
        timeout=60,
    )


def docker_image_id(image: str) -> str | None:
    status, body = docker_api("GET", f"/images/{image}/json")
    return str(json.loads(body)["Id"]) if status == 200 else None


def build_sandbox_image() -> None:
    """The pod sandbox ("pause") image: the busybox base sleeping forever."""
    ctx = STATE / "images" / "pause"
    ctx.mkdir(parents=True, exist_ok=True)
    dockerfile = (
        "# The pod sandbox image of the test nodes (containerd's sandbox_image): the\n"
        f"# busybox base, sleeping. Built here: nothing can be pulled.\nFROM {BASE_IMAGE}\n"
        'ENTRYPOINT ["/bin/sleep", "2147483647"]\n'
    )
    (ctx / "Dockerfile").write_text(dockerfile)
    digest = hashlib.sha256((dockerfile + (docker_image_id(BASE_IMAGE) or "")).encode())
    build_image("nodes (images)", SANDBOX_IMAGE, ctx, digest.hexdigest())


def node_images() -> tuple[str, ...]:
    return (BASE_IMAGE, REGISTRY_IMAGE, SANDBOX_IMAGE, *EXTRA_IMAGES)


def import_images(node: Node, images: tuple[str, ...] | None = None) -> None:
    """Import each test image (or each of ``images``) whose id the node's containerd
    does not have yet."""
    have = set(crictl(node, "images", "-q").stdout.split())
    missing = [img for img in images or node_images() if docker_image_id(img) not in have]
    if not missing:
        return
    log(f"nodes: importing {', '.join(missing)} into {node.name}")
    part = f"nodes ({node.name})"
    save = subprocess.Popen(
        [DOCKER, "save", *missing],
        stdout=subprocess.PIPE,
        env={**os.environ, "DOCKER_HOST": DOCKER_HOST},
    )
    try:
        ctr = subprocess.run(
            ["ctr", "--address", str(node.sock), "--namespace", "k8s.io", "images", "import", "-"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        assert save.stdout is not None
        save.stdout.close()
        save.wait(60)
    if save.returncode != 0 or ctr.returncode != 0:
        raise PartError(
            part, "importing the test images failed", ["ctr", "images", "import"], ctr.stderr
        )


# ---------------------------------------------------------------------------------------
# Bring-up and tear-down


def node_ready(kube: Kube, name: str) -> bool:
    status, body = kube.request("GET", f"/api/v1/nodes/{name}")
    if status != 200:
        return False
    info = body.get("status", {}).get("nodeInfo", {})
    return str(info.get("containerRuntimeVersion", "")).startswith("containerd://") and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in body.get("status", {}).get("conditions", [])
    )


def forget_fake_node(kube: Kube, node: Node) -> None:
    """An older environment's kwok node of the same name would be faked by kwok."""
    status, body = kube.request("GET", f"/api/v1/nodes/{node.name}")
    if status == 200 and body["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node"):
        log(f"nodes: deleting the kwok node {node.name} (a real node takes its name)")
        kube.request("DELETE", f"/api/v1/nodes/{node.name}")


def start_node_process(
    state: dict[str, Any],
    node: Node,
    what: str,
    argv: list[str],
    ready_what: str,
    ready: Any,
    timeout: float = 90,
    wrap: list[str] | None = None,
) -> None:
    """``wrap``: a command that execs the words after it (``argv``) in the end; the
    pid stays, and ``argv[0]`` is what to match."""
    name = node.proc(what)
    log(f"nodes: starting {name}")
    # nsenter execs the command in the node's namespace: the pid stays, and the
    # command line to match is the command's own.
    command = argv if wrap is None else [*wrap, *argv]
    proc = start_process(state, name, [*node.netns_prefix(), *command], match=argv[:1])
    wait_for(
        f"nodes ({name})",
        ready_what,
        ready,
        timeout,
        alive=process_gone(state, name, proc),
        command=argv,
        log_path=STATE / "logs" / f"{name}.log",
    )


def private_hosts(hosts: Path) -> list[str]:
    """A mount namespace of its own (slave: this machine's later mounts still reach
    it) where ``hosts`` is /etc/hosts. Only what runs there sees it: containerd, which
    resolves the names it pulls from. Pods with volumes mounted later by the kubelet
    would not see them there (/ is not a shared mount here): the odd nodes run the
    probe's pods only, which mount nothing."""
    script = f"mount --bind {shlex.quote(str(hosts))} /etc/hosts && "
    return ["unshare", "--mount", "--propagation", "slave", "sh", "-c", script + 'exec "$0" "$@"']


def up_node(state: dict[str, Any], kube: Kube, node: Node, api_port: int) -> None:
    d = node.dir
    for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    changed = write_if_changed(d / "containerd.toml", containerd_config(node))
    changed |= write_if_changed(d / "cni" / "net.d" / "10-devreg.conflist", cni_config(node))
    for path, text in registry_hosts(node).items():
        write_if_changed(path, text)  # read at each pull: no restart needed
    wrap = None
    if node.hosts_file is not None:
        changed |= write_if_changed(node.hosts_file, IPV6_LOCALHOST_HOSTS)
        wrap = private_hosts(node.hosts_file)
    if changed or not proc_alive(state, node.proc("containerd")):
        stop_process(state, node.proc("containerd"))
        start_node_process(
            state,
            node,
            "containerd",
            ["containerd", "--config", str(d / "containerd.toml")],
            f"crictl info on {node.sock}",
            lambda: crictl(node, "info", check=False).returncode == 0,
            60,
            wrap=wrap,
        )
    import_images(node)

    kubelet_healthz = port_for(
        state, node.proc("kubelet-healthz"), running=proc_alive(state, node.proc("kubelet"))
    )
    changed = write_if_changed(d / "kubeconfig", node_kubeconfig(node, api_port))
    changed |= write_if_changed(d / "kubelet.yaml", kubelet_config(node, kubelet_healthz))
    if changed or not proc_alive(state, node.proc("kubelet")):
        stop_process(state, node.proc("kubelet"))
        forget_fake_node(kube, node)
        argv = [
            str(k8s_bin_dir() / "kubelet"),
            f"--config={d / 'kubelet.yaml'}",
            f"--kubeconfig={d / 'kubeconfig'}",
            f"--root-dir={d / 'kubelet'}",
            f"--cert-dir={d / 'kubelet' / 'pki'}",
            f"--hostname-override={node.name}",
            f"--node-ip={node.ip}",
            f"--node-labels={REAL_LABEL}={'odd' if node.odd else 'real'},"
            f"{REAL_LABEL}-netns={node.netns or 'host'}",
            "--v=1",
        ]
        start_node_process(
            state,
            node,
            "kubelet",
            argv,
            f"node {node.name} Ready",
            lambda: node_ready(kube, node.name),
            120,
        )

    alive = proc_alive(state, node.proc("kube-proxy"))
    healthz = port_for(state, node.proc("kube-proxy-healthz"), running=alive)
    metrics = port_for(state, node.proc("kube-proxy-metrics"), running=alive)
    changed = write_if_changed(d / "kube-proxy.yaml", kube_proxy_config(node, healthz, metrics))
    if changed or not alive:
        stop_process(state, node.proc("kube-proxy"))
        argv = [str(k8s_bin_dir() / "kube-proxy"), f"--config={d / 'kube-proxy.yaml'}", "--v=1"]
        url = f"http://127.0.0.1:{healthz}/healthz"

        def proxy_healthy() -> bool:
            cmd = [*node.netns_prefix(), "busybox", "wget", "-q", "-O", "/dev/null", url]
            return subprocess.run(cmd, capture_output=True, check=False, timeout=5).returncode == 0

        start_node_process(state, node, "kube-proxy", argv, f"GET {url}", proxy_healthy, 60)


def up_nodes(state: dict[str, Any]) -> None:
    part = "nodes"
    apt_install(part, PACKAGES)
    build_all()
    build_crictl()
    api_port = int(state["ports"]["kube-apiserver"])
    kube = Kube(api_port)
    node_rbac(kube)
    claim_nodes(state)
    state.setdefault("sysctl_route_localnet", ROUTE_LOCALNET.read_text().strip())
    network_up()
    write_if_changed(away_kubeconfig_path(), away_kubeconfig(api_port))
    build_sandbox_image()
    for node in NODES:
        up_node(state, kube, node, api_port)


def claim_nodes(state: dict[str, Any]) -> None:
    """One environment per machine runs nodes: their bridge, namespaces, addresses and
    iptables chains have fixed names.  The owner's state dir is kept in OWNER_FILE."""
    owner = OWNER_FILE.read_text().strip() if OWNER_FILE.exists() else ""
    if owner and owner != str(STATE) and Path(owner, "state.json").exists():
        raise PartError(
            "nodes",
            f"the environment in {owner} runs the real nodes of this machine; "
            f"take it down first (DEVREG_TESTENV_DIR={owner} scripts/testenv down nodes)",
        )
    OWNER_FILE.parent.mkdir(parents=True, exist_ok=True)
    OWNER_FILE.write_text(f"{STATE}\n")
    state["nodes_owner"] = True
    save_state(state)


def node_rbac(kube: Kube) -> None:
    """No Node authorizer here (RBAC only): nodes and their proxies get the roles."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    for binding, role in (
        ("devreg-testenv-nodes", "system:node"),
        ("devreg-testenv-node-proxier", "system:node-proxier"),
    ):
        kube.apply(
            f"{rbac}/clusterrolebindings/{binding}",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": binding},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Group",
                        "name": "system:nodes",
                    }
                ],
            },
        )


def node_mounts(node: Node) -> list[str]:
    """Mount points under the node's directory (the kubelet's volumes), deepest first."""
    prefix = str(node.dir) + "/"
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def down_node(state: dict[str, Any], node: Node) -> None:
    stop_process(state, node.proc("kubelet"))
    if proc_alive(state, node.proc("containerd")) and crictl_bin().exists():
        # Through the CRI, so containerd tears each pod's network down (CNI DEL).
        crictl(node, "rmp", "--all", "--force", check=False)
    stop_process(state, node.proc("kube-proxy"))
    proxy = k8s_bin_dir() / "kube-proxy"
    if proxy.exists():
        run(
            f"nodes ({node.name})",
            [*node.netns_prefix(), str(proxy), "--cleanup"],
            check=False,
            log_path=STATE / "logs" / f"{node.proc('kube-proxy')}.log",
        )
    stop_process(state, node.proc("containerd"))
    kill_shims(node)
    for point in node_mounts(node):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def shim_pids(node: Node) -> list[int]:
    """The node's containerd shims (each the parent of a pod's containers): they are
    daemons of their own, not children of containerd, and carry its socket."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            cmd = proc_cmdline(int(proc.name))
            if cmd and cmd[0].endswith("containerd-shim-runc-v2") and str(node.sock) in cmd:
                pids.append(int(proc.name))
    return pids


def kill_shims(node: Node) -> None:
    """containerd's shims outlive it."""
    for pid in shim_pids(node):
        with contextlib.suppress(OSError):
            os.killpg(pid, 9)
        with contextlib.suppress(OSError):
            os.kill(pid, 9)


def nodes_memory(state: dict[str, Any]) -> list[tuple[str, list[int]]]:
    """For `status`: the pods of each node (its shims and their containers)."""
    return [(f"pods on {node.name} (shims and containers)", shim_pids(node)) for node in NODES]


def down_nodes(state: dict[str, Any]) -> None:
    """Stop the nodes and remove every trace: pods (through the CRI), kube-proxy's
    rules, mounts, namespaces, bridges, veths, our iptables chain, the Node objects.

    Only an environment that brought its nodes up takes them down: the network names
    are this machine's, and a second environment (another state dir) has none."""
    if not state.get("nodes_owner"):
        return
    kube = None
    if proc_alive(state, "kube-apiserver") and (pki() / "admin.crt").exists():
        kube = Kube(int(state["ports"]["kube-apiserver"]))
    for node in reversed(NODES):
        down_node(state, node)
        if kube is not None:
            with contextlib.suppress(OSError, ValueError):
                kube.request("DELETE", f"/api/v1/nodes/{node.name}")
    remove_kube_chains()
    network_down()
    # kube-proxy turned route_localnet on (localhost NodePorts): put back what was.
    saved = state.get("sysctl_route_localnet")
    if saved is not None:
        ROUTE_LOCALNET.write_text(f"{saved}\n")
        del state["sysctl_route_localnet"]
    OWNER_FILE.unlink(missing_ok=True)
    del state["nodes_owner"]


# ---------------------------------------------------------------------------------------
# crictl (sigs.k8s.io/cri-tools has no replace directives: a plain go install)


def crictl_bin() -> Path:
    return CACHE / f"crictl-{CRICTL_VERSION}" / "crictl"


def build_crictl() -> None:
    go_install(
        "nodes build (crictl)",
        "sigs.k8s.io/cri-tools/cmd/crictl",
        CRICTL_VERSION,
        crictl_bin(),
    )


# ---------------------------------------------------------------------------------------
# The part


def nodes_problems(state: dict[str, Any]) -> list[str]:
    return [
        f"{name} is not running"
        for node in NODES
        for name in (node.proc("containerd"), node.proc("kubelet"), node.proc("kube-proxy"))
        if not proc_alive(state, name)
    ]


def nodes_exports(state: dict[str, Any]) -> list[tuple[str, str]]:
    netns = [n for n in NODES if n.netns]
    return [
        ("DEVREG_TEST_REAL_NODES", ",".join(n.name for n in NODES if not n.odd)),
        ("DEVREG_TEST_ODD_NODES", ",".join(f"{n.name}={n.odd}" for n in NODES if n.odd)),
        ("DEVREG_TEST_NODE_NETNS", ",".join(f"{n.name}={n.netns}" for n in netns)),
        ("DEVREG_TEST_CRICTL", str(crictl_bin())),
        ("DEVREG_TEST_AWAY_NETNS", AWAY_NETNS),
        ("DEVREG_TEST_AWAY_KUBECONFIG", str(away_kubeconfig_path())),
    ]


PART = Part(
    up_nodes,
    nodes_problems,
    nodes_exports,
    processes=tuple(
        node.proc(what) for node in NODES for what in ("containerd", "kubelet", "kube-proxy")
    ),
    needs=("images", "kube"),
    down=down_nodes,
    memory=nodes_memory,
)
