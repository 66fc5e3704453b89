"""Part ``buildkit``: the BuildKit sidecar image for ``localbuild: false``, built here
(nothing is pulled) and imported into every real node's containerd.

``devreg-test/buildkit:<buildkit version>`` is laid out as the seed's default image,
``moby/buildkit:master-rootless``, is: user ``user`` (uid/gid 1000) with the subordinate
ids ``100000:65536``, ``$HOME=/home/user``, ``$XDG_RUNTIME_DIR=/run/user/1000``,
``$BUILDKIT_HOST`` on the socket there, state at ``/home/user/.local/share/buildkit``,
``USER 1000:1000`` and ``ENTRYPOINT ["rootlesskit", "buildkitd"]``.  It holds

- ``buildkitd`` and ``buildctl`` from ``scripts/buildkit-bin`` (built through the Go
  module proxy, cached by version);
- ``rootlesskit`` (``go install github.com/rootless-containers/rootlesskit/v2/...``,
  cached by version): it makes the user namespace buildkitd runs in;
- Debian's ``runc`` (``RUN`` steps) and ``newuidmap``/``newgidmap`` (package
  ``uidmap``), with the libraries ``ldd`` lists;
- the busybox base (``sh``, ``tar``, ``head``, ``setsid``: what devreg runs there).

``newuidmap``/``newgidmap`` carry the file capabilities ``cap_setuid``/``cap_setgid``
instead of Debian's setuid bit.  Debian's build (shadow 4.13) opens ``uid_map`` while it
is still euid 0, and the kernel then wants ``CAP_SYS_ADMIN`` from the opener, which a
container does not have: under a setuid ``newuidmap`` rootlesskit fails with
``newuidmap: write to uid_map failed: Operation not permitted`` (seen here, in Docker and
in a pod; moby/buildkit#3297 is the same failure).  Alpine's shadow, which upstream's
image uses, drops to the caller's uid with only ``CAP_SETUID`` before opening; a file
capability gives the same state (euid 1000, ``CAP_SETUID``) from the start.  The
capabilities are set by a ``RUN setcap`` inside the image build, because ``COPY`` from
the build context does not carry extended attributes; ``COPY --from`` a stage does, and
so do ``docker save`` and containerd's import.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from . import nodes
from .common import CACHE, STATE, Part, PartError, apt_install, log, proc_alive, run
from .gobuild import go_install
from .images import BASE_IMAGE, build_image, image_label, shared_libs

NAME = "buildkit"
BUILDKIT_BIN = Path(__file__).resolve().parent.parent / "buildkit-bin"
ROOTLESSKIT_VERSION = os.environ.get("DEVREG_TESTENV_ROOTLESSKIT_VERSION", "v2.3.6")
ROOTLESSKIT_MODULE = "github.com/rootless-containers/rootlesskit/v2"
PACKAGES = ("runc", "uidmap", "libcap2-bin")
RUNC = "/usr/sbin/runc"
IDMAP = ("/usr/bin/newuidmap", "/usr/bin/newgidmap")
SETCAP = "/usr/sbin/setcap"
LOADER = Path("/lib64/ld-linux-x86-64.so.2")
UID = 1000
SUBIDS = "user:100000:65536\n"


def buildkit_version() -> str:
    return os.environ.get("DEVREG_BUILDKIT_VERSION", "v0.34.2")


def image_name() -> str:
    return f"devreg-test/buildkit:{buildkit_version()}"


def buildkit_bin_dir() -> Path:
    """buildkitd and buildctl from scripts/buildkit-bin (one implementation of that
    build: the buildkit tests use the same script)."""
    done = run(NAME, [str(BUILDKIT_BIN)], timeout=3600)
    out = done.stdout.strip().splitlines()
    if not out or not Path(out[-1], "buildkitd").is_file():
        raise PartError(NAME, "scripts/buildkit-bin printed no directory", [str(BUILDKIT_BIN)])
    return Path(out[-1])


def rootlesskit_bin() -> Path:
    return CACHE / f"rootlesskit-{ROOTLESSKIT_VERSION}" / "rootlesskit"


def build_rootlesskit() -> Path:
    """rootlesskit has no replace or exclude directives: a plain ``go install``."""
    go_install(
        f"{NAME} build (rootlesskit)",
        f"{ROOTLESSKIT_MODULE}/cmd/rootlesskit",
        ROOTLESSKIT_VERSION,
        rootlesskit_bin(),
    )
    return rootlesskit_bin()


PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    f"user:x:{UID}:{UID}:user:/home/user:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/:/bin/false\n"
)
GROUP = f"root:x:0:\nuser:x:{UID}:\nnogroup:x:65534:\n"

DOCKERFILE = f"""\
# devreg test environment: the BuildKit sidecar image for `localbuild: false`, laid out
# as moby/buildkit:master-rootless is, from locally built and Debian binaries (nothing
# is pulled; see scripts/devreg_testenv/buildkit.py).

# newuidmap/newgidmap get file capabilities instead of the setuid bit (Debian's build
# needs CAP_SYS_ADMIN when setuid); COPY from the context drops xattrs, so set them here.
FROM {BASE_IMAGE} AS prep
COPY setcap/ /setcap/
COPY idmap/ /out/usr/bin/
RUN ["/setcap/lib64/ld-linux-x86-64.so.2", "--library-path", "/setcap/lib", \\
     "/setcap/setcap", "cap_setuid=ep", "/out/usr/bin/newuidmap", \\
     "cap_setgid=ep", "/out/usr/bin/newgidmap"]
RUN ["/bin/sh", "-c", "mkdir -p /out/home/user/.local/share/buildkit /out/home/user/.local/tmp \\
     /out/run/user/{UID} && chown -R {UID}:{UID} /out/home/user /out/run/user/{UID}"]

FROM {BASE_IMAGE}
COPY rootfs/ /
COPY --from=prep /out/ /
ENV HOME=/home/user USER=user XDG_RUNTIME_DIR=/run/user/{UID} \\
    TMPDIR=/home/user/.local/tmp \\
    BUILDKIT_HOST=unix:///run/user/{UID}/buildkit/buildkitd.sock
USER {UID}:{UID}
VOLUME /home/user/.local/share/buildkit
ENTRYPOINT ["rootlesskit", "buildkitd"]
"""


def inputs(bk: Path, rootlesskit: Path) -> dict[str, Path]:
    """Image path (under the context) -> file on this machine."""
    files: dict[str, Path] = {
        "rootfs/usr/bin/buildkitd": bk / "buildkitd",
        "rootfs/usr/bin/buildctl": bk / "buildctl",
        "rootfs/usr/bin/rootlesskit": rootlesskit,
        "rootfs/usr/bin/runc": Path(RUNC),
    }
    for tool in IDMAP:
        files[f"idmap/{Path(tool).name}"] = Path(tool)
    for binary in (RUNC, *IDMAP):
        for lib in shared_libs(NAME, binary):
            files[f"rootfs{lib}"] = lib.resolve()
    files["setcap/setcap"] = Path(SETCAP)
    for lib in shared_libs(NAME, SETCAP):
        # The loader at the path the RUN step names; the libraries in one directory.
        name = "lib64/ld-linux-x86-64.so.2" if lib == LOADER else f"lib/{lib.name}"
        files[f"setcap/{name}"] = lib.resolve()
    return files


TEXT_FILES = {
    "rootfs/etc/passwd": PASSWD,
    "rootfs/etc/group": GROUP,
    "rootfs/etc/subuid": SUBIDS,
    "rootfs/etc/subgid": SUBIDS,
    "Dockerfile": DOCKERFILE,
}


def digest(files: dict[str, Path]) -> str:
    """The image's inputs: names, modes and contents (the same inputs give the same
    image, whatever the state dir)."""
    h = hashlib.sha256()
    for name in sorted(files):
        path = files[name]
        h.update(f"{name}\0{path.stat().st_mode & 0o777:o}\0".encode())
        with path.open("rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    for name, text in sorted(TEXT_FILES.items()):
        h.update(f"{name}\0{text}".encode())
    return h.hexdigest()


def build_buildkit_image() -> None:
    apt_install(NAME, PACKAGES)
    files = inputs(buildkit_bin_dir(), build_rootlesskit())
    want = digest(files)
    image = image_name()
    if image_label(image, "devreg.testenv.hash") == want:
        log(f"{NAME}: {image} is up to date")
        return
    ctx = STATE / "images" / "buildkit"
    shutil.rmtree(ctx, ignore_errors=True)
    for name, src in files.items():
        dest = ctx / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        dest.chmod(0o755 if os.access(src, os.X_OK) else 0o644)
    for name, text in TEXT_FILES.items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    tmp = ctx / "rootfs" / "tmp"
    tmp.mkdir(parents=True)
    tmp.chmod(0o1777)  # devreg's work directories, as uid 1000
    build_image(NAME, image, ctx, want)


def real_nodes_up(state: dict[str, Any]) -> list[nodes.Node]:
    """The nodes a registry (and its buildkitd sidecar) may land on: not the odd ones,
    which are tainted."""
    return [n for n in nodes.NODES if not n.odd and proc_alive(state, n.proc("containerd"))]


def up_buildkit(state: dict[str, Any]) -> None:
    build_buildkit_image()
    for node in real_nodes_up(state):
        nodes.import_images(node, (image_name(),))


def node_lacks_image(node: nodes.Node, image_id: str) -> bool:
    done = subprocess.run(
        [str(nodes.crictl_bin()), "--runtime-endpoint", f"unix://{node.sock}", "images", "-q"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode != 0 or image_id not in done.stdout.split()


def buildkit_problems(state: dict[str, Any]) -> list[str]:
    image = image_name()
    if image_label(image, "devreg.testenv.hash") is None:
        return [f"image {image} is missing"]
    image_id = nodes.docker_image_id(image) or ""
    return [
        f"image {image} is not in {node.name}'s containerd"
        for node in real_nodes_up(state)
        if node_lacks_image(node, image_id)
    ]


def buildkit_exports(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [("DEVREG_TEST_BUILDKIT_IMAGE", image_name())]


# Built by the engine of part `docker`, imported into the nodes of part `nodes`.
PART = Part(up_buildkit, buildkit_problems, buildkit_exports, needs=("images", "nodes"))
