"""The Go builds (`scripts/testenv build`): the Kubernetes binaries through a wrapper module,
etcd, kwok; cached by version under CACHE."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from .common import CACHE, ETCD_VERSION, K8S_VERSION, KWOK_VERSION, PartError, locked, log, run


def go_command() -> str:
    explicit = os.environ.get("DEVREG_TESTENV_GO")
    if explicit:
        return explicit
    return shutil.which("go") or "/usr/local/go/bin/go"


def go_env() -> dict[str, str]:
    return {
        "CGO_ENABLED": "0",
        "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local"),
        "GOFLAGS": "-mod=mod",
    }


def fetch_text(url: str, timeout: float = 60) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed proxy URL
        return str(resp.read().decode())


def goproxy_base() -> str:
    for entry in os.environ.get("GOPROXY", "https://proxy.golang.org").replace("|", ",").split(","):
        if entry.startswith("http"):
            return entry.rstrip("/")
    return "https://proxy.golang.org"


def k8s_bin_dir(version: str = K8S_VERSION) -> Path:
    return CACHE / f"kubernetes-{version}"


def etcd_bin() -> Path:
    return CACHE / f"etcd-{ETCD_VERSION}" / "etcd"


def kwok_bin() -> Path:
    return CACHE / f"kwok-{KWOK_VERSION}" / "kwok"


K8S_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",  # the version that matches the cluster, for tests, benchmarks and the demo
)


def build_kubernetes() -> None:
    out = k8s_bin_dir()
    missing = [b for b in K8S_BINARIES if not (out / b).is_file()]
    if not missing:
        return
    part = "kube build (kubernetes)"
    ver = K8S_VERSION
    if not ver.startswith("v1."):
        raise PartError(part, f"unexpected Kubernetes version {ver!r} (want v1.X.Y)")
    minor = ver.split(".")[1]
    staging_ver = "v0." + ver[len("v1.") :]
    src = CACHE / "src" / f"kubernetes-{ver}"
    src.mkdir(parents=True, exist_ok=True)
    build_log = CACHE / "logs" / f"kubernetes-{ver}.log"
    mod_url = f"{goproxy_base()}/k8s.io/kubernetes/@v/{ver}.mod"
    log(
        f"building Kubernetes {ver} ({', '.join(missing)}) "
        f"through the Go module proxy; log: {build_log}"
    )
    try:
        upstream_mod = fetch_text(mod_url)
    except (urllib.error.URLError, OSError) as e:
        raise PartError(part, f"cannot read {mod_url}: {e}", ["GET", mod_url]) from None
    # Every staging module: the `k8s.io/x => ./staging/src/k8s.io/x` replace lines.
    staging = sorted(
        {
            line.split("=>")[0].strip()
            for line in upstream_mod.splitlines()
            if "=> ./staging/" in line
        }
    )
    if not staging:
        raise PartError(
            part, f"no staging modules listed in {mod_url}", ["GET", mod_url], upstream_mod
        )
    commit = ""
    try:
        info = json.loads(fetch_text(f"{goproxy_base()}/k8s.io/kubernetes/@v/{ver}.info"))
        commit = str(info.get("Origin", {}).get("Hash", ""))
    except (urllib.error.URLError, OSError, ValueError):
        pass
    gomod = [
        "module devreg.test/testenv/kubernetes",
        "",
        "go 1.24.0",
        "",
        f"require k8s.io/kubernetes {ver}",
        "",
        "replace (",
    ]
    gomod += [f"\t{m} => {m} {staging_ver}" for m in staging]
    gomod += [")", ""]
    (src / "go.mod").write_text("\n".join(gomod))
    build_date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ldflags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, val in (
            ("gitVersion", ver),
            ("gitMajor", "1"),
            ("gitMinor", minor),
            ("gitCommit", commit),
            ("gitTreeState", "clean"),
            ("buildDate", build_date),
        ):
            ldflags.append(f"-X '{pkg}.{key}={val}'")
    tmp_out = src / "bin"
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir()
    go = go_command()
    t0 = time.monotonic()
    run(
        part,
        [go, "mod", "download", "k8s.io/kubernetes"],
        cwd=src,
        env=go_env(),
        log_path=build_log,
    )
    run(
        part,
        [
            go,
            "build",
            "-trimpath",
            "-tags",
            "selinux,notest",
            "-ldflags",
            " ".join(ldflags),
            "-o",
            str(tmp_out) + "/",
            *[f"k8s.io/kubernetes/cmd/{b}" for b in missing],
        ],
        cwd=src,
        env=go_env(),
        log_path=build_log,
    )
    out.mkdir(parents=True, exist_ok=True)
    for b in missing:
        (tmp_out / b).replace(out / b)
    log(f"built Kubernetes {ver} in {time.monotonic() - t0:.0f}s")


def build_etcd() -> None:
    target = etcd_bin()
    if target.is_file():
        return
    part = "kube build (etcd)"
    src = CACHE / "src" / f"etcd-{ETCD_VERSION}"
    src.mkdir(parents=True, exist_ok=True)
    build_log = CACHE / "logs" / f"etcd-{ETCD_VERSION}.log"
    log(f"building etcd {ETCD_VERSION} (a wrapper main calling etcdmain); log: {build_log}")
    (src / "go.mod").write_text(
        "module devreg.test/testenv/etcd\n\ngo 1.24.0\n\n"
        f"require go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"
    )
    (src / "main.go").write_text(
        "// etcd, built from go.etcd.io/etcd/server/v3 through the Go module proxy.\n"
        'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    go = go_command()
    t0 = time.monotonic()
    run(part, [go, "mod", "tidy"], cwd=src, env=go_env(), log_path=build_log)
    tmp = src / "etcd.tmp"
    run(
        part,
        [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp), "."],
        cwd=src,
        env=go_env(),
        log_path=build_log,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(target)
    log(f"built etcd {ETCD_VERSION} in {time.monotonic() - t0:.0f}s")


def go_install(
    part: str, package: str, version: str, target: Path, *, ldflags: str = "-s -w"
) -> None:
    """``go install package@version`` (a module without replace directives) into the
    cache at ``target``, unless it is there; its log under ``<cache>/logs/``."""
    if target.is_file():
        return
    name = target.name
    build_log = CACHE / "logs" / f"{name}-{version}.log"
    log(f"building {name} {version} (go install); log: {build_log}")
    gobin = CACHE / "src" / f"{name}-{version}-bin"
    shutil.rmtree(gobin, ignore_errors=True)
    gobin.mkdir(parents=True)
    t0 = time.monotonic()
    run(
        part,
        [go_command(), "install", "-trimpath", "-ldflags", ldflags, f"{package}@{version}"],
        cwd=CACHE,
        env={**go_env(), "GOBIN": str(gobin), "GOFLAGS": ""},
        log_path=build_log,
        timeout=1800,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    (gobin / name).replace(target)
    log(f"built {name} {version} in {time.monotonic() - t0:.0f}s")


def build_kwok() -> None:
    go_install(
        "kube build (kwok)",
        "sigs.k8s.io/kwok/cmd/kwok",
        KWOK_VERSION,
        kwok_bin(),
        ldflags=f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION}",
    )


def build_all() -> None:
    if (
        all((k8s_bin_dir() / b).is_file() for b in K8S_BINARIES)
        and etcd_bin().is_file()
        and kwok_bin().is_file()
    ):
        return
    go = go_command()
    if shutil.which(go) is None and not Path(go).is_file():
        raise PartError(
            "kube build",
            f"the Go toolchain is missing: {go} not found (Go >= 1.24 "
            "is needed; set DEVREG_TESTENV_GO)",
            [go, "version"],
        )
    with locked(CACHE / ".build.lock", "build"):
        build_kubernetes()
        build_etcd()
        build_kwok()
