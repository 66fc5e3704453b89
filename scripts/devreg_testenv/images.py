"""Part `images`: the test images, built FROM scratch from Debian packages (nothing is
pulled)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from .common import STATE, Part, PartError, apt_install, log, run
from .docker import DOCKER, DOCKER_HOST, docker_api
from .registry import REGISTRY_BIN

BUSYBOX_BIN = "/bin/busybox"

BASE_IMAGE = "devreg-test/busybox:latest"
REGISTRY_IMAGE = "registry:2.8.1"


def image_label(image: str, label: str) -> str | None:
    try:
        status, body = docker_api("GET", f"/images/{image}/json")
    except OSError:
        return None
    if status != 200:
        return None
    labels = (json.loads(body).get("Config") or {}).get("Labels") or {}
    return labels.get(label)


def file_digest(h: Any, path: Path) -> None:
    """Add a file's name and content to the image's input hash (not its directory: the
    images are shared by every state dir)."""
    h.update(path.name.encode())
    h.update(path.read_bytes())


def build_image(part: str, image: str, context: Path, digest: str) -> None:
    if image_label(image, "devreg.testenv.hash") == digest:
        log(f"images: {image} is up to date")
        return
    log(f"images: building {image}")
    run(
        part,
        [DOCKER, "build", "--label", f"devreg.testenv.hash={digest}", "-t", image, str(context)],
        env={"DOCKER_HOST": DOCKER_HOST, "DOCKER_BUILDKIT": "1"},
        log_path=STATE / "logs" / "images.log",
        timeout=600,
    )


def shared_libs(part: str, binary: str) -> list[Path]:
    """What a dynamically linked binary loads (libc and the loader for docker-registry)."""
    proc = run(part, ["ldd", binary], check=False)
    out = proc.stdout + proc.stderr
    if "not a dynamic executable" in out or "statically linked" in out:
        return []
    if proc.returncode != 0:
        raise PartError(part, f"ldd {binary} failed", ["ldd", binary], out)
    libs = []
    for line in out.splitlines():
        line = line.strip()
        path = line.split("=>", 1)[1].strip() if "=>" in line else line
        path = path.split(" (", 1)[0].strip()
        if path.startswith("/"):
            libs.append(Path(path))
    return libs


REGISTRY_IMAGE_CONFIG = """\
# devreg test environment: the registry without auth (Debian's packaged config turns
# htpasswd on).  REGISTRY_* environment variables override any field.
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def up_images(state: dict[str, Any]) -> None:
    part = "images"
    apt_install(part, ["busybox-static", "docker-registry"])
    images = STATE / "images"

    # devreg-test/busybox:latest: a static busybox and a symlink per applet.
    ctx = images / "busybox"
    shutil.rmtree(ctx, ignore_errors=True)
    root = ctx / "rootfs"
    (root / "bin").mkdir(parents=True)
    for d in ("tmp", "etc", "root", "usr/bin", "sbin", "usr/sbin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX_BIN, root / "bin" / "busybox")
    applets = run(part, [BUSYBOX_BIN, "--list"]).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (ctx / "Dockerfile").write_text(
        "# devreg test base image: Debian's busybox-static, FROM scratch (no pulls)\n"
        "FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin:/usr/bin:/sbin:/usr/sbin\n"
        'CMD ["/bin/sh"]\n'
    )
    h = hashlib.sha256()
    file_digest(h, ctx / "Dockerfile")
    file_digest(h, root / "bin" / "busybox")
    h.update(" ".join(applets).encode())
    build_image(part, BASE_IMAGE, ctx, h.hexdigest())

    # registry:2.8.1: Debian's docker-registry with what it links, and a config without auth.
    ctx = images / "registry"
    shutil.rmtree(ctx, ignore_errors=True)
    root = ctx / "rootfs"
    (root / "bin").mkdir(parents=True)
    for d in ("tmp", "var/lib/registry", "etc/docker/registry"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(REGISTRY_BIN, root / "bin" / "registry")
    h = hashlib.sha256()
    file_digest(h, Path(REGISTRY_BIN))
    for lib in shared_libs(part, REGISTRY_BIN):
        dest = root / lib.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), dest)
        file_digest(h, lib.resolve())
    (root / "etc" / "docker" / "registry" / "config.yml").write_text(REGISTRY_IMAGE_CONFIG)
    (ctx / "Dockerfile").write_text(
        "# The registry image of devreg's default config, built FROM scratch from Debian's\n"
        "# docker-registry (distribution 2.8.2) plus libc and the loader.\n"
        'FROM scratch\nCOPY rootfs/ /\nVOLUME ["/var/lib/registry"]\nEXPOSE 5000\n'
        'ENTRYPOINT ["/bin/registry"]\nCMD ["serve", "/etc/docker/registry/config.yml"]\n'
    )
    file_digest(h, ctx / "Dockerfile")
    h.update(REGISTRY_IMAGE_CONFIG.encode())
    build_image(part, REGISTRY_IMAGE, ctx, h.hexdigest())


def images_problems(state: dict[str, Any]) -> list[str]:
    problems = []
    for image in (BASE_IMAGE, REGISTRY_IMAGE):
        if image_label(image, "devreg.testenv.hash") is None:
            problems.append(f"image {image} is missing")
    return problems


def images_exports(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("DEVREG_TEST_BASE_IMAGE", BASE_IMAGE),
        ("DEVREG_TEST_REGISTRY_IMAGE", REGISTRY_IMAGE),
    ]


# The images are built by the engine of part `docker`.
PART = Part(up_images, images_problems, images_exports, needs=("docker",))
