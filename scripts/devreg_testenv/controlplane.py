"""Part `kube`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and the
PersistentVolume provisioner loop; the bootstrap objects (RBAC, StorageClass, nodes)."""

from __future__ import annotations

import functools
import hashlib
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import (
    K8S_VERSION,
    LAUNCHER,
    STATE,
    Part,
    PartError,
    http_status_safe,
    log,
    port_for,
    proc_alive,
    process_gone,
    start_process,
    stop_process,
    tail_file,
    wait_for,
)
from .gobuild import build_all, etcd_bin, k8s_bin_dir, kwok_bin
from .pki import (
    CONTEXT,
    LIMITED_CONTEXT,
    LIMITED_NAMESPACE,
    LIMITED_USER,
    make_certs,
    pki,
    write_kubeconfigs,
)

# kwok's fake nodes, for scale: tainted, so only a pod that tolerates the taint lands
# there; the real nodes (nodes.py) take every other pod.  kwok manages only these.
KWOK_NODES = ("devreg-kwok-0", "devreg-kwok-1")
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
KWOK_POD_CIDR = "10.245.0.0/16"  # fake pod IPs, apart from the real nodes' 10.244.0.0/16
STORAGE_CLASS = "devreg-standard"
PROVISIONER = "devreg.test/hostpath"
SERVICE_CIDR = "10.96.0.0/16"


class Kube:
    """Just enough of a Kubernetes client for the bootstrap objects (standard library)."""

    def __init__(self, port: int, cert: str = "admin") -> None:
        self.base = f"https://127.0.0.1:{port}"
        d = pki()
        self.ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
        self.ctx.load_cert_chain(str(d / f"{cert}.crt"), str(d / f"{cert}.key"))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 10,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ctx) as resp:  # noqa: S310
                raw = resp.read()
                status = int(resp.status)
        except urllib.error.HTTPError as e:
            raw = e.read()
            status = int(e.code)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def apply(self, path: str, obj: dict[str, Any]) -> Any:
        """Server-side apply of one object at its own path."""
        status, body = self.request(
            "PATCH",
            f"{path}?fieldManager=devreg-testenv&force=true",
            obj,
            content_type="application/apply-patch+yaml",
        )
        if status not in (200, 201):
            raise PartError(
                "kube",
                f"server-side apply of {path} answered {status}",
                ["PATCH", self.base + path],
                json.dumps(body, indent=1),
            )
        return body


KUBE_PROCESSES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "provisioner",
)


def https_ok(url: str, kube: Kube | None = None, insecure: bool = False) -> bool:
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        assert kube is not None
        ctx = kube.ctx
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def bootstrap_objects(kube: Kube) -> None:
    """Namespaces, RBAC of the limited user, the default StorageClass, the fake nodes."""
    kube.apply(
        f"/api/v1/namespaces/{LIMITED_NAMESPACE}",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LIMITED_NAMESPACE}},
    )
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    kube.apply(
        f"{rbac}/clusterrolebindings/devreg-testenv-limited-view",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "devreg-testenv-limited-view"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": LIMITED_USER}
            ],
        },
    )
    kube.apply(
        f"{rbac}/clusterroles/devreg-testenv-limited-cluster-read",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "devreg-testenv-limited-cluster-read"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["namespaces", "nodes", "persistentvolumes"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["storage.k8s.io"],
                    "resources": ["storageclasses"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
    )
    kube.apply(
        f"{rbac}/clusterrolebindings/devreg-testenv-limited-cluster-read",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "devreg-testenv-limited-cluster-read"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "devreg-testenv-limited-cluster-read",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": LIMITED_USER}
            ],
        },
    )
    kube.apply(
        f"{rbac}/namespaces/{LIMITED_NAMESPACE}/roles/devreg-limited-edit",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "devreg-limited-edit", "namespace": LIMITED_NAMESPACE},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": [
                        "configmaps",
                        "secrets",
                        "services",
                        "pods",
                        "persistentvolumeclaims",
                        "serviceaccounts",
                    ],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                },
                {
                    "apiGroups": ["apps"],
                    "resources": ["statefulsets"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                },
                # Deployments: read only (from `view`); create/update/patch/delete are refused.
            ],
        },
    )
    kube.apply(
        f"{rbac}/namespaces/{LIMITED_NAMESPACE}/rolebindings/devreg-limited-edit",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "devreg-limited-edit", "namespace": LIMITED_NAMESPACE},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "devreg-limited-edit",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": LIMITED_USER}
            ],
        },
    )
    kube.apply(
        f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}",
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": True,
        },
    )
    for i, name in enumerate(KWOK_NODES):
        path = f"/api/v1/nodes/{name}"
        status, _ = kube.request("GET", path)
        if status == 200:
            continue
        resources = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {
                "podCIDR": f"10.245.{i}.0/24",
                "podCIDRs": [f"10.245.{i}.0/24"],
                "taints": [KWOK_TAINT],
            },
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": K8S_VERSION,
                    "kubeProxyVersion": "",
                    "bootID": "",
                    "machineID": "",
                    "systemUUID": "",
                    "containerRuntimeVersion": "kwok",
                    "kernelVersion": "",
                    "osImage": "",
                },
            },
        }
        status, body = kube.request("POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise PartError(
                "kube",
                f"creating node {name} answered {status}",
                ["POST", kube.base + "/api/v1/nodes"],
                json.dumps(body, indent=1),
            )


def node_ready(kube: Kube, name: str) -> bool:
    status, body = kube.request("GET", f"/api/v1/nodes/{name}")
    if status != 200:
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in body.get("status", {}).get("conditions", [])
    )


def start_component(
    state: dict[str, Any],
    name: str,
    argv: list[str],
    ready_what: str,
    ready: Callable[[], bool],
    timeout: float = 90,
) -> None:
    log(f"kube: starting {name}")
    proc = start_process(state, name, argv)
    wait_for(
        f"kube ({name})",
        ready_what,
        ready,
        timeout,
        alive=process_gone(state, name, proc),
        command=argv,
        log_path=STATE / "logs" / f"{name}.log",
    )


def up_kube(state: dict[str, Any]) -> None:
    part = "kube"
    build_all()
    make_certs(part)
    d = pki()
    kube_dir = STATE / "kube"
    kube_dir.mkdir(parents=True, exist_ok=True)

    etcd_alive = proc_alive(state, "etcd")
    etcd_port = port_for(state, "etcd-client", running=etcd_alive)
    etcd_peer = port_for(state, "etcd-peer", running=etcd_alive)
    etcd_url = f"http://127.0.0.1:{etcd_port}"

    def etcd_healthy() -> bool:
        with urllib.request.urlopen(f"{etcd_url}/health", timeout=3) as resp:  # noqa: S310
            return bool(json.loads(resp.read()).get("health") == "true")

    if not (etcd_alive and etcd_healthy_safe(etcd_healthy)):
        stop_process(state, "etcd")
        argv = [
            str(etcd_bin()),
            "--name",
            "devreg-testenv",
            "--data-dir",
            str(STATE / "etcd"),
            "--listen-client-urls",
            etcd_url,
            "--advertise-client-urls",
            etcd_url,
            "--listen-peer-urls",
            f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster",
            f"devreg-testenv=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",
            "--log-level",
            "warn",
            "--quota-backend-bytes",
            str(2 * 1024**3),
        ]
        start_component(state, "etcd", argv, f"GET {etcd_url}/health", etcd_healthy, 60)

    api_alive = proc_alive(state, "kube-apiserver")
    api_port = port_for(state, "kube-apiserver", "DEVREG_TESTENV_APISERVER_PORT", running=api_alive)
    write_kubeconfigs(api_port, state.get("kubeconfig_contexts"))
    kube = Kube(api_port)
    readyz = f"{kube.base}/readyz"
    argv = [
        str(k8s_bin_dir() / "kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        # All addresses: the nodes in network namespaces of their own reach it
        # through the nodes' bridge (nodes.py); this machine uses 127.0.0.1.
        "--bind-address=0.0.0.0",
        f"--secure-port={api_port}",
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
        f"--cert-dir={kube_dir / 'apiserver-certs'}",
        f"--tls-cert-file={d / 'apiserver.crt'}",
        f"--tls-private-key-file={d / 'apiserver.key'}",
        f"--client-ca-file={d / 'ca.crt'}",
        f"--kubelet-client-certificate={d / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={d / 'apiserver-kubelet-client.key'}",
        # The nodes' names are in no DNS here: reach kubelets by their addresses.
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={d / 'sa.pub'}",
        f"--service-account-signing-key-file={d / 'sa.key'}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--enable-admission-plugins=NodeRestriction",
        "--profiling=false",
        "--v=1",
    ]
    # A changed command line (an older environment's) restarts it, too.
    if not (api_alive and same_argv(state, "kube-apiserver", argv) and https_ok(readyz, kube)):
        # Everything that talks to the API server restarts with it.
        for name in (
            "provisioner",
            "kwok",
            "kube-scheduler",
            "kube-controller-manager",
            "kube-apiserver",
        ):
            stop_process(state, name)
        start_component(
            state, "kube-apiserver", argv, f"GET {readyz} = ok", lambda: https_ok(readyz, kube), 120
        )
    bootstrap_objects(kube)

    for name, kcfg in (
        ("kube-controller-manager", "controller-manager"),
        ("kube-scheduler", "scheduler"),
    ):
        alive = proc_alive(state, name)
        port = port_for(state, name, running=alive)
        healthz = f"https://127.0.0.1:{port}/healthz"
        if alive and https_ok(healthz, insecure=True):
            continue
        stop_process(state, name)
        cfg = str(kube_dir / f"{kcfg}.kubeconfig")
        argv = [
            str(k8s_bin_dir() / name),
            f"--kubeconfig={cfg}",
            f"--authentication-kubeconfig={cfg}",
            f"--authorization-kubeconfig={cfg}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={kube_dir / (name + '-certs')}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]
        if name == "kube-controller-manager":
            argv += [
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={d / 'sa.key'}",
                f"--root-ca-file={d / 'ca.crt'}",
                f"--cluster-signing-cert-file={d / 'ca.crt'}",
                f"--cluster-signing-key-file={d / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*,-nodeipam",
            ]
        start_component(
            state,
            name,
            argv,
            f"GET {healthz} = ok",
            functools.partial(https_ok, healthz, insecure=True),
            90,
        )

    alive = proc_alive(state, "kwok")
    kwok_port = port_for(state, "kwok", running=alive)
    kwok_healthz = f"http://127.0.0.1:{kwok_port}/healthz"
    if not (alive and http_status_safe(kwok_healthz) == 200):
        stop_process(state, "kwok")
        kwok_cfg = kube_dir / "kwok.yaml"
        kwok_cfg.write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions: {}\n"
        )
        argv = [
            str(kwok_bin()),
            f"--kubeconfig={kube_dir / 'kwok.kubeconfig'}",
            f"--config={kwok_cfg}",
            # Only its own nodes: a kwok that manages all nodes fakes the real nodes'
            # pods too (Running with kwok's pod IPs while the kubelet fails them).
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--server-address=127.0.0.1:{kwok_port}",
            f"--cidr={KWOK_POD_CIDR}",
            "--node-ip=127.0.0.1",
            "--node-lease-duration-seconds=40",
        ]
        start_component(
            state,
            "kwok",
            argv,
            f"GET {kwok_healthz} = 200",
            lambda: http_status_safe(kwok_healthz) == 200,
            60,
        )

    argv = provisioner_argv()
    if not (proc_alive(state, "provisioner") and provisioner_current(state)):
        stop_process(state, "provisioner")
        log("kube: starting the PersistentVolume provisioner loop")
        proc = start_process(
            state, "provisioner", argv, env={"DEVREG_TESTENV_DIR": str(STATE)}, match=argv
        )
        time.sleep(0.3)
        if proc.poll() is not None:
            raise PartError(
                "kube (provisioner)",
                "exited at once",
                argv,
                tail_file(STATE / "logs" / "provisioner.log"),
            )

    for name in KWOK_NODES:
        wait_for(
            "kube (kwok)",
            f"node {name} Ready",
            functools.partial(node_ready, kube, name),
            60,
            alive=lambda: proc_alive(state, "kwok"),
            log_path=STATE / "logs" / "kwok.log",
        )
    wait_for(
        "kube (kube-controller-manager)",
        "ServiceAccount default/default",
        lambda: kube.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        60,
        alive=lambda: proc_alive(state, "kube-controller-manager"),
        log_path=STATE / "logs" / "kube-controller-manager.log",
    )


def provisioner_argv() -> list[str]:
    """The provisioner loop's command line, naming a digest of the code it runs: a loop
    started from older code (the mode of its directories, say) is restarted by ``up``
    and reported by ``env``, instead of running on unseen.  Only the digest is
    compared (:func:`provisioner_current`): another checkout of the same code, with
    another launcher path, uses the running loop as it is."""
    code = (Path(__file__).resolve().parent / "provisioner.py").read_bytes()
    digest = hashlib.sha256(code).hexdigest()[:12]
    return [sys.executable, str(LAUNCHER), "_provisioner", f"--code={digest}"]


def provisioner_current(state: dict[str, Any]) -> bool:
    rec = state["procs"].get("provisioner") or {}
    return provisioner_argv()[-1] in (rec.get("argv") or [])


def same_argv(state: dict[str, Any], name: str, argv: list[str]) -> bool:
    rec = state["procs"].get(name) or {}
    return bool(rec.get("argv") == argv)


def etcd_healthy_safe(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except (OSError, ValueError):
        return False


def kube_problems(state: dict[str, Any]) -> list[str]:
    problems = []
    for name in KUBE_PROCESSES:
        if not proc_alive(state, name):
            problems.append(f"{name} is not running")
    if proc_alive(state, "provisioner") and not provisioner_current(state):
        problems.append("the provisioner runs older code (`scripts/testenv up kube` restarts it)")
    if not problems:
        kube = Kube(int(state["ports"]["kube-apiserver"]))
        if not https_ok(f"{kube.base}/readyz", kube):
            problems.append("the API server is not ready")
    return problems


def kube_exports(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("KUBECONFIG", str(STATE / "kubeconfig")),
        ("DEVREG_TEST_KUBE_CONTEXT", CONTEXT),
        ("DEVREG_TEST_KUBE_LIMITED_CONTEXT", LIMITED_CONTEXT),
        ("DEVREG_TEST_KUBE_LIMITED_NAMESPACE", LIMITED_NAMESPACE),
        ("DEVREG_TEST_KUBE_VERSION", K8S_VERSION),
        ("DEVREG_TEST_KUBECTL", str(k8s_bin_dir() / "kubectl")),
    ]


PART = Part(up_kube, kube_problems, kube_exports, processes=KUBE_PROCESSES)
