"""The pull probe's pure parts: its image, its pod, and reading the kubelet's words.

The probe proves that a node can pull ``<host>/…`` (``localhost:<nodePort>/…``) before
the user's own workload finds out it cannot. Its image is made here from bytes, with no
Docker engine: one layer holding ``/probe``, a 129-byte static ELF that calls
``exit(0)`` (one for amd64, one for arm64, under one manifest list), so the probe pod
pulls, runs and succeeds in milliseconds whatever the node's architecture.

When a pull fails, :func:`diagnose` turns the kubelet's message into a cause the user
can act on, with the fix (see docs/cluster.md, "The pull probe").
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from typing import Any

REPOSITORY = "devreg/pull-probe"
COMPONENT = "pull-probe"  # app.kubernetes.io/component of the probe's pods
RUN_LABEL = "devreg.dev/pull-probe-run"

MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# --- the image ------------------------------------------------------------------------------

_BASE = 0x400000
_EHDR = 64
_PHDR = 56
# exit(0): amd64 ``xor edi, edi; mov eax, 60; syscall``; arm64 ``mov x0, #0;
# mov x8, #93; svc #0`` (little-endian words).
_CODE = {
    "amd64": (62, bytes.fromhex("31ffb83c0000000f05")),
    "arm64": (183, struct.pack("<3I", 0xD2800000, 0xD2800BA8, 0xD4000001)),
}


def exit_zero_elf(arch: str) -> bytes:
    """A static ELF64 executable for ``arch`` that exits 0: one header, one
    loadable segment, the code right after the headers."""
    machine, code = _CODE[arch]
    size = _EHDR + _PHDR + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2,  # ET_EXEC
        machine,
        1,
        _BASE + _EHDR + _PHDR,  # entry: the code
        _EHDR,  # program headers right after this one
        0,
        0,
        _EHDR,
        _PHDR,
        1,
        0,
        0,
        0,
    )
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)  # PT_LOAD, R+X
    return header + segment + code


def _layer(binary: bytes) -> tuple[bytes, bytes]:
    """(gzipped tar, tar) holding ``probe`` (0755), byte-for-byte reproducible."""
    import gzip
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("probe")
        info.size, info.mode, info.mtime = len(binary), 0o755, 0
        tar.addfile(info, io.BytesIO(binary))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), tar_bytes


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ProbeImage:
    """Everything the registry is given: blobs by digest, then one manifest per
    architecture, then the list naming them under :attr:`tag`."""

    blobs: dict[str, bytes]  # digest -> bytes (layers and configs)
    manifests: dict[str, bytes]  # digest -> a platform's manifest
    index: bytes  # the manifest list
    tag: str

    @property
    def index_digest(self) -> str:
        return _digest(self.index)


def probe_image() -> ProbeImage:
    blobs: dict[str, bytes] = {}
    manifests: dict[str, bytes] = {}
    entries = []
    for arch in _CODE:
        gz, tar = _layer(exit_zero_elf(arch))
        config = _canonical(
            {
                "architecture": arch,
                "os": "linux",
                "config": {"Entrypoint": ["/probe"], "User": "65534"},
                "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]},
            }
        )
        blobs[_digest(gz)] = gz
        blobs[_digest(config)] = config
        manifest = _canonical(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, "size": len(config), "digest": _digest(config)},
                "layers": [{"mediaType": LAYER, "size": len(gz), "digest": _digest(gz)}],
            }
        )
        manifests[_digest(manifest)] = manifest
        entries.append(
            {
                "mediaType": MANIFEST,
                "size": len(manifest),
                "digest": _digest(manifest),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = _canonical({"schemaVersion": 2, "mediaType": MANIFEST_LIST, "manifests": entries})
    return ProbeImage(blobs, manifests, index, tag=_digest(index)[7:19])


# --- the pod -------------------------------------------------------------------------------


def probe_pod(*, namespace: str, registry: str, node: str, image: str, run: str) -> dict[str, Any]:
    """One short-lived pod pinned to ``node`` (``nodeName``: no scheduler, so a node
    the scheduler would pass over is still probed), pulling ``image`` every time."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{registry}-pull-probe-",
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": registry,
                "app.kubernetes.io/component": COMPONENT,
                "app.kubernetes.io/managed-by": "devreg",
                RUN_LABEL: run,
            },
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "Always",
                    "resources": {
                        "requests": {"cpu": "1m", "memory": "4Mi"},
                        "limits": {"cpu": "10m", "memory": "8Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                }
            ],
        },
    }


PULL_FAILED = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})


def pull_outcome(pod: dict[str, Any]) -> tuple[str, str] | None:
    """``("pulled", detail)``, ``("failed", kubelet's message)`` or None (not yet)
    from a probe pod's status."""
    status = pod.get("status") or {}
    for c in status.get("containerStatuses") or []:
        state = c.get("state") or {}
        if c.get("imageID") or "running" in state or "terminated" in state:
            return "pulled", str(c.get("imageID") or "")
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in PULL_FAILED:
            return "failed", str(waiting.get("message") or waiting.get("reason"))
    return None


# --- the diagnosis ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    cause: str  # one word: ipv6-localhost, no-loopback-nodeport, https-only, ...
    says: str  # what is wrong, in words
    fix: str  # what to do
    snippets: tuple[str, ...] = ()  # settings to paste, one per runtime


_REFUSED_V6 = re.compile(r"dial tcp \[::1\]:(\d+): connect: (connection refused|[^\"]+)")
_REFUSED_V4 = re.compile(r"dial tcp 127\.\d+\.\d+\.\d+:(\d+): connect: connection refused")
_REFUSED = re.compile(r"connect: connection refused")
_UNREACHABLE = re.compile(r"i/o timeout|no route to host|network is unreachable|deadline exceeded")


def https_snippets(host: str) -> tuple[str, ...]:
    """Each runtime's setting that lets ``host`` be pulled over plain HTTP."""
    return (
        f'containerd (config_path = "/etc/containerd/certs.d" under '
        f'[plugins."io.containerd.grpc.v1.cri".registry]): '
        f"/etc/containerd/certs.d/{host}/hosts.toml\n"
        f'  server = "http://{host}"\n'
        f'  [host."http://{host}"]\n'
        f'    capabilities = ["pull", "resolve"]',
        "CRI-O: /etc/containers/registries.conf.d/devreg.conf\n"
        f'  [[registry]]\n  location = "{host}"\n  insecure = true',
        f'Docker Engine: /etc/docker/daemon.json\n  {{"insecure-registries": ["{host}"]}}',
    )


def refused(message: str) -> bool:
    """Whether the kubelet's message is a refused connection (at ``::1`` or ``127.x``)."""
    return _REFUSED.search(message) is not None


def diagnose(message: str, host: str, *, v4_works: bool | None = None) -> Diagnosis:
    """Why a node could not pull from ``host``, from the kubelet's ``message``.
    ``v4_works``: whether the same node pulled through ``127.0.0.1`` (None: not tried)."""
    port = host.rpartition(":")[2]
    if "server gave HTTP response to HTTPS client" in message:
        return Diagnosis(
            "https-only",
            f"the node's container runtime pulls {host} over HTTPS only, and the "
            "registry speaks plain HTTP",
            "let the runtime use plain HTTP for this one host (restart not needed for "
            "containerd's hosts.toml; CRI-O and Docker need a restart)",
            https_snippets(host),
        )
    return _loopback(message, port, v4_works) or _network(message, host, port)


def _loopback(message: str, port: str, v4_works: bool | None) -> Diagnosis | None:
    """A refusal on the node's own loopback: ``::1`` first (IPv6-first localhost), or
    nothing on ``127.0.0.1`` either (no node port there)."""
    if _REFUSED_V6.search(message) and v4_works is not False:
        tried = (
            f"127.0.0.1:{port} works on that node (probed)"
            if v4_works
            else f"127.0.0.1:{port} should work"
        )
        return Diagnosis(
            "ipv6-localhost",
            f"the node resolves localhost to ::1 first, and node ports answer on IPv4 only "
            f"(devspace-sh/devspace#2852); {tried}",
            "export DEVREG_NODE_HOST=127.0.0.1 (for devreg up/build/watch and the hook) so "
            f"images are named 127.0.0.1:{port}/… instead of localhost:{port}/…",
        )
    if _REFUSED_V4.search(message) or (_REFUSED_V6.search(message) and v4_works is False):
        return Diagnosis(
            "no-loopback-nodeport",
            f"nothing answers on the node's own 127.0.0.1:{port}: its kube-proxy does not "
            "serve node ports on localhost (nftables and ipvs modes never do; iptables mode "
            "only with localhostNodePorts: true), or a firewall rejects the port",
            "run kube-proxy in iptables mode with iptables.localhostNodePorts: true (the "
            "default), or let the cluster publish a registry of its own (KEP-1755) that "
            "devreg then uses instead of deploying one",
        )
    return None


def _network(message: str, host: str, port: str) -> Diagnosis:
    """Everything else the runtime can say about reaching ``host``."""
    if _REFUSED.search(message):
        return Diagnosis(
            "refused",
            f"the node's connection to {host} was refused",
            f"check that node port {port} is open on the node (firewall) and that the "
            "registry's Service still has it",
        )
    if _UNREACHABLE.search(message):
        return Diagnosis(
            "unreachable",
            f"the node could not reach {host} (no answer: a firewall dropping the port?)",
            f"open node port {port} on the node's loopback, or check its firewall",
        )
    if re.search(r"x509|certificate", message):
        return Diagnosis(
            "tls",
            f"the node's runtime wants a certificate {host} does not have",
            "let the runtime use plain HTTP for this host",
            https_snippets(host),
        )
    if re.search(r"not found|manifest unknown", message):
        return Diagnosis(
            "not-found",
            f"{host} answered, but without the probe image (another registry on that port, "
            "or the registry restarted between the push and the pull)",
            "run devreg up again; if it repeats, check what listens on the node port",
        )
    return Diagnosis("unknown", "the pull failed", "read the kubelet's message above")
