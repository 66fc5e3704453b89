"""The PersistentVolume provisioner (`scripts/testenv _provisioner`, started by part `kube`):
a loop standing in for a CSI driver.  Its PersistentVolumes are hostPath directories under
``<state>/pv/``; the real nodes (part ``nodes``) share this machine's filesystem, so a pod
on either of them mounts the same directory."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

from .common import STATE, load_state, log
from .controlplane import PROVISIONER, STORAGE_CLASS, Kube


def provisioner_loop() -> int:
    state = load_state()
    port = int(state["ports"]["kube-apiserver"])
    kube = Kube(port)
    pv_root = STATE / "pv"
    log(f"provisioner: watching PVCs of StorageClass {STORAGE_CLASS} ({PROVISIONER})")
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    while not stop:
        try:
            provision_once(kube, pv_root)
        except Exception as e:  # noqa: BLE001 - keep going; the API server may restart
            log(f"provisioner: {e!r}")
        for _ in range(10):
            if stop:
                break
            time.sleep(0.1)
    return 0


def provision_once(kube: Kube, pv_root: Path) -> None:
    status, pvcs = kube.request("GET", "/api/v1/persistentvolumeclaims")
    if status != 200:
        return
    for pvc in pvcs.get("items", []):
        meta, spec = pvc["metadata"], pvc.get("spec", {})
        if spec.get("volumeName") or pvc.get("status", {}).get("phase") != "Pending":
            continue
        ann = meta.get("annotations", {})
        wanted = ann.get("volume.kubernetes.io/storage-provisioner") or ann.get(
            "volume.beta.kubernetes.io/storage-provisioner"
        )
        if wanted != PROVISIONER and spec.get("storageClassName") != STORAGE_CLASS:
            continue
        name = f"pvc-{meta['uid']}"
        path = pv_root / name
        path.mkdir(parents=True, exist_ok=True)
        # World-writable, as the local-path-provisioner of kind and k3s makes its own
        # (`mkdir -m 0777 -p "$VOL_DIR"`): the real kubelet bind-mounts this directory
        # as it is (a hostPath volume gets no fsGroup ownership change), and the pod
        # that claims it runs as whatever user its image or securityContext says
        # (devreg's registry: uid 1000, read-only root filesystem). Made by root under
        # umask 022 it would be 0755 root:root, and the registry's first push would
        # fail: "mkdir /var/lib/registry/docker: permission denied".
        path.chmod(0o777)
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            },
            "spec": {
                "capacity": {
                    "storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
                },
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": spec.get("storageClassName") or STORAGE_CLASS,
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            },
        }
        status, body = kube.request("POST", "/api/v1/persistentvolumes", pv)
        if status == 201:
            log(f"provisioner: {name} for {meta['namespace']}/{meta['name']}")
        elif status != 409:
            log(f"provisioner: creating {name} answered {status}: {body}")
    status, pvs = kube.request("GET", "/api/v1/persistentvolumes")
    if status != 200:
        return
    for pv in pvs.get("items", []):
        meta = pv["metadata"]
        if meta.get("annotations", {}).get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
            continue
        if (
            pv.get("status", {}).get("phase") in ("Released", "Failed")
            and pv.get("spec", {}).get("persistentVolumeReclaimPolicy") == "Delete"
        ):
            status, _ = kube.request("DELETE", f"/api/v1/persistentvolumes/{meta['name']}")
            if status in (200, 202, 404):
                shutil.rmtree(pv_root / meta["name"], ignore_errors=True)
                log(f"provisioner: deleted {meta['name']}")
