"""The control plane's certificates (openssl, a local CA) and kubeconfigs."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

from .common import STATE, apt_install, log, run

CONTEXT = "devreg-test"
LIMITED_CONTEXT = "devreg-test-limited"
LIMITED_NAMESPACE = "devreg-limited"
LIMITED_USER = "devreg-limited"


def pki() -> Path:
    return STATE / "pki"


def openssl(part: str, *args: str) -> None:
    run(part, ["openssl", *args], cwd=pki(), log_path=STATE / "logs" / "openssl.log")


def make_certs(part: str) -> None:
    d = pki()
    d.mkdir(parents=True, exist_ok=True)
    if (d / "done").exists():
        return
    if shutil.which("openssl") is None:
        apt_install(part, ["openssl"])
    log("kube: generating certificates (openssl)")
    openssl(
        part,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=devreg-testenv-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )
    openssl(part, "genrsa", "-out", "sa.key", "2048")
    openssl(part, "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    sans = (
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        "DNS:kubernetes.default.svc.cluster.local"
    )
    certs = {
        "apiserver": ("/CN=kube-apiserver", "serverAuth", sans),
        "admin": ("/O=system:masters/CN=devreg-admin", "clientAuth", None),
        "limited": (f"/CN={LIMITED_USER}", "clientAuth", None),
        "controller-manager": ("/CN=system:kube-controller-manager", "clientAuth", None),
        "scheduler": ("/CN=system:kube-scheduler", "clientAuth", None),
        "kwok": ("/O=system:masters/CN=kwok", "clientAuth", None),
        "apiserver-kubelet-client": (
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
            "clientAuth",
            None,
        ),
    }
    for name, (subj, usage, san) in certs.items():
        sign(part, name, subj, usage, san)
    (d / "done").write_text("ok\n")


def sign(part: str, name: str, subj: str, usage: str, san: str | None = None) -> None:
    """``<pki>/<name>.key`` and ``<name>.crt`` signed by the test CA for ``subj``."""
    d = pki()
    openssl(
        part,
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subj,
    )
    ext = d / f"{name}.ext"
    ext.write_text(
        f"extendedKeyUsage={usage}\nkeyUsage=critical,digitalSignature,"
        f"keyEncipherment\n" + (f"{san}\n" if san else "")
    )
    openssl(
        part,
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-out",
        f"{name}.crt",
        "-extfile",
        ext.name,
    )


def b64file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig_text(
    server: str, users: dict[str, str], contexts: dict[str, tuple[str, str]], current: str
) -> str:
    """A kubeconfig (JSON is YAML) with embedded certificates."""
    d = pki()
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority-data": b64file(d / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64file(d / f"{cert}.crt"),
                    "client-key-data": b64file(d / f"{cert}.key"),
                },
            }
            for user, cert in users.items()
        ],
        "contexts": [
            {"name": name, "context": {"cluster": CONTEXT, "user": user, "namespace": ns}}
            for name, (user, ns) in contexts.items()
        ],
        "current-context": current,
    }
    return json.dumps(cfg, indent=2) + "\n"


def write_kubeconfigs(port: int, extra_contexts: dict[str, list[str]] | None = None) -> None:
    """``<state>/kubeconfig`` and the components' kubeconfigs.  ``extra_contexts`` (name:
    [user, namespace], kept in the state file by the parts that add them, such as
    ``kind-devreg-kind``) are more contexts of the admin's kubeconfig on the same cluster."""
    server = f"https://127.0.0.1:{port}"
    kube = STATE / "kube"
    kube.mkdir(parents=True, exist_ok=True)
    files = {
        STATE / "kubeconfig": kubeconfig_text(
            server,
            {"devreg-admin": "admin", LIMITED_USER: "limited"},
            {
                CONTEXT: ("devreg-admin", "default"),
                LIMITED_CONTEXT: (LIMITED_USER, LIMITED_NAMESPACE),
                **{name: (user, ns) for name, (user, ns) in (extra_contexts or {}).items()},
            },
            CONTEXT,
        ),
    }
    for name in ("controller-manager", "scheduler", "kwok"):
        files[kube / f"{name}.kubeconfig"] = kubeconfig_text(
            server, {name: name}, {CONTEXT: (name, "default")}, CONTEXT
        )
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o600)
            tmp.replace(path)
