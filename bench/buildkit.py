"""In-cluster build path vs ``buildctl build`` by hand (issue 5). Target: ratio <= 1.1.

Two set-ups: ``--real`` (below) on the registry pod of a real node, and the default,
on this machine. The default: the same build, a one-file change to a small project
(busybox base from the context, 300 source files, two RUN steps), then push to the
registry, done two ways against one buildkitd started here:

* devreg: :class:`watcher.build.buildkit.backend.BuildkitBackend` over
  :class:`~watcher.build.buildkit.transport.LocalTransport` (index update, tar of the
  context, ``sh``/``head``/``tar`` unpack, buildctl, progress parsing, clean-up);
* by hand: ``buildctl build`` with ``--local`` pointing at the project.

Every measured build follows a fresh one-file change, so neither side finds
its result in BuildKit's cache; the order alternates. Each side has its own
buildkitd (same binary, same flags): buildkitd keeps one copy of the local
``context`` for all clients and sends only what changed against it, so two
sides sharing one daemon would each re-send what the other just replaced,
which no real set-up does. Needs root (runc
worker) and a loopback registry (``DEVREG_TEST_REGISTRY``; ``scripts/testenv
env`` prints it).

``--real``: the path devreg takes with ``localbuild: false``, on a real node of
``scripts/testenv``. ``devreg up`` (no Docker engine reachable) deploys the registry
pod with its ``buildkitd`` container (``DEVREG_TEST_BUILDKIT_IMAGE``, rootless) in a
namespace of its own; then the same one-file change is built and pushed, interleaved,

* by devreg: ``in_cluster_backend`` (:class:`BuildkitBackend` over
  :class:`ExecTransport`: the exec stream of the Kubernetes API through the real
  kubelet, tar unpacked in the pod, ``buildctl`` run there, progress read back), as
  ``devreg watch`` does for each change;
* by hand: ``buildctl --addr kube-pod://<pod>?namespace=…&container=buildkitd build``
  on this machine, which is ``kubectl exec -i <pod> -c buildkitd -- buildctl
  dial-stdio`` carrying BuildKit's own session (the context is synced by buildkitd's
  file sync, only changes travel) — on the same pod, the same buildkitd, pushing to
  the same registry at ``localhost:5000``.

The namespace is deleted at the end. Needs ``KUBECONFIG``, ``DEVREG_TEST_KUBECTL``
and ``DEVREG_TEST_BUILDKIT_IMAGE`` (``eval "$(scripts/testenv env)"``).

    python bench/buildkit.py [--runs N] [--files N] [--real]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hookpkg.config import Image  # noqa: E402
from watcher.build.backends import BuildRequest  # noqa: E402
from watcher.build.buildkit.backend import BuildkitBackend, in_cluster_backend  # noqa: E402
from watcher.build.buildkit.transport import LocalTransport  # noqa: E402
from watcher.build.contenttag import ContextIndex  # noqa: E402

REGISTRY = os.environ.get("DEVREG_TEST_REGISTRY", "127.0.0.1:5055")
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY src /app/src
RUN cat /app/src/*/* | wc -c > /app/size
CMD ["cat", "/app/size"]
"""


def start_buildkitd(tmp: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    bin_dir = Path(
        subprocess.run(
            [str(REPO / "scripts" / "buildkit-bin")], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    addr = f"unix://{tmp}/buildkitd.sock"
    log = (tmp / "buildkitd.log").open("wb")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}:/usr/sbin:/sbin"}
    proc = subprocess.Popen(
        [str(bin_dir / "buildkitd"), "--addr", addr, "--root", str(tmp / "state"),
         "--oci-worker=true", "--containerd-worker=false"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(
            [str(bin_dir / "buildctl"), "--addr", addr, "debug", "workers"], capture_output=True
        )
        if done.returncode == 0 and len(done.stdout.splitlines()) > 1:
            return proc, addr, bin_dir / "buildctl"
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"buildkitd did not start; see {tmp / 'buildkitd.log'}")
        time.sleep(0.1)


def make_project(root: Path, files: int) -> tuple[Path, Path]:
    ctx = root / "ctx"
    for i in range(files):
        d = ctx / "src" / f"pkg{i // 30:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i:04d}.py").write_text(f"# module {i}\n" + "x = 1\n" * 300)
    shutil.copy2("/bin/busybox", ctx / "busybox")
    (ctx / ".dockerignore").write_text("*.pyc\n")
    dockerfile = ctx / "Dockerfile"
    dockerfile.write_text(DOCKERFILE)
    return ctx, dockerfile


def measure(
    devreg: Callable[[], float], by_hand: Callable[[], float], runs: int
) -> tuple[list[float], list[float]]:
    """Warm-up (the base layers, both ways), then ``runs`` of each, the order
    alternating."""
    devreg()
    by_hand()
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(runs):
        if i % 2:
            ours.append(devreg())
            theirs.append(by_hand())
        else:
            theirs.append(by_hand())
            ours.append(devreg())
    return ours, theirs


def report(
    title: str, ours_name: str, hand_name: str, ours: list[float], theirs: list[float]
) -> int:
    a, b = statistics.median(ours), statistics.median(theirs)
    print(title)
    print(f"  {ours_name:<44} median {a * 1000:7.0f} ms  (min {min(ours) * 1000:.0f})")
    print(f"  {hand_name:<44} median {b * 1000:7.0f} ms  (min {min(theirs) * 1000:.0f})")
    ratio = a / b
    verdict = "meets" if ratio <= 1.1 else "MISSES"
    print(f"  ratio devreg / by hand {ratio:.2f} ({verdict} the 1.1 target)")
    return 0 if ratio <= 1.1 else 1


def devreg_cli() -> list[str]:
    found = shutil.which("devreg")
    return [found] if found else [sys.executable, "-m", "watcher"]


def real_bench(args: argparse.Namespace) -> int:
    missing = [
        n
        for n in ("KUBECONFIG", "DEVREG_TEST_KUBECTL", "DEVREG_TEST_BUILDKIT_IMAGE")
        if not os.environ.get(n)
    ]
    if missing:
        print(f'--real needs {", ".join(missing)}: eval "$(scripts/testenv env)"', file=sys.stderr)
        return 2
    from kubernetes import client, config

    tmp = Path(tempfile.mkdtemp(prefix="devreg-bkr-"))
    namespace = f"devreg-bench-bk-{uuid.uuid4().hex[:6]}"
    # buildctl's kube-pod helper runs `kubectl`: the cluster's own, first on PATH.
    kbin = tmp / "bin"
    kbin.mkdir()
    (kbin / "kubectl").symlink_to(os.environ["DEVREG_TEST_KUBECTL"])
    buildctl = (
        Path(
            subprocess.run(
                [str(REPO / "scripts" / "buildkit-bin")], check=True, capture_output=True, text=True
            ).stdout.strip()
        )
        / "buildctl"
    )
    new_client: Any = config.new_client_from_config
    api = new_client()
    core = client.CoreV1Api(api)
    try:
        ctx, dockerfile = make_project(tmp, args.files)
        (tmp / "devspace.yaml").write_text(
            "version: v2beta1\nname: bench\nlocalRegistry:\n  enabled: true\n"
            f"  localbuild: false\n  buildKitImage: {os.environ['DEVREG_TEST_BUILDKIT_IMAGE']}\n"
            "images:\n  app:\n    image: ghcr.io/bench/app\n    context: ./ctx\n"
            "    dockerfile: ./ctx/Dockerfile\n"
        )
        no_engine = {**os.environ, "DOCKER_HOST": f"unix://{tmp}/no-docker.sock"}
        t = time.perf_counter()
        up = subprocess.run(
            [*devreg_cli(), "up", "--namespace", namespace, "--format", "json"],
            cwd=tmp, env=no_engine, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if up.returncode != 0:
            print(f"devreg up failed:\n{up.stdout}\n{up.stderr}", file=sys.stderr)
            return 1
        up_s = time.perf_counter() - t
        backend = in_cluster_backend(
            core, namespace=namespace, registry_name="registry", registry_port=5000
        )
        pod_name = backend.transport.pod()  # type: ignore[attr-defined]
        pod: Any = core.read_namespaced_pod(pod_name, namespace)
        print(
            f"registry pod {namespace}/{pod_name} on {pod.spec.node_name} "
            f"(node port {json.loads(up.stdout)['node_port']}; devreg up {up_s:.1f} s)"
        )
        changed = ctx / "src" / "pkg00" / "mod0000.py"
        index = ContextIndex(ctx, dockerfile)
        index.scan()
        image = Image("app", "localhost:31234/bench/app", (), dockerfile, ctx, {}, None, "docker",
                      "devspace.yaml", 1, 1)  # fmt: skip
        counter = iter(range(10**6))

        def change() -> int:
            n = next(counter)
            changed.write_text(f"# change {n}\n" + "x = 1\n" * 300)
            return n

        def devreg() -> float:
            n = change()
            t = time.perf_counter()
            index.update([changed])
            request = BuildRequest(
                image, "localhost:31234/bench/devreg", f"r{n}", ctx, index.snapshot().files(),
                dockerfile, push=True,
            )  # fmt: skip
            backend.build(request, log=lambda _: None, cancel=threading.Event())
            return time.perf_counter() - t

        addr = f"kube-pod://{pod_name}?namespace={namespace}&container=buildkitd"
        hand_env = {**no_engine, "PATH": f"{kbin}:{os.environ['PATH']}"}

        def by_hand() -> float:
            n = change()
            t = time.perf_counter()
            subprocess.run(
                [str(buildctl), "--addr", addr, "build", "--frontend", "dockerfile.v0",
                 "--local", f"context={ctx}", "--local", f"dockerfile={ctx}",
                 "--opt", "filename=Dockerfile",
                 "--output", f"type=image,name=localhost:5000/bench/hand:r{n},push=true,"
                 "registry.insecure=true", "--progress", "plain"],
                check=True, capture_output=True, env=hand_env,
            )  # fmt: skip
            return time.perf_counter() - t

        ours, theirs = measure(devreg, by_hand, args.runs)
        backend.close()
        return report(
            f"one-file change, build + push in the registry pod on a real node, {args.files} "
            f"files; {args.runs} runs each",
            "devreg (in_cluster_backend: exec, in the pod)",
            "buildctl --addr kube-pod:// (kubectl exec)",
            ours,
            theirs,
        )
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(namespace, grace_period_seconds=0)
        api.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--real", action="store_true", help="the registry pod on a real node")
    args = parser.parse_args()
    if args.real:
        return real_bench(args)
    if os.geteuid() != 0:
        print("bench/buildkit.py runs buildkitd as root (runc worker)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="devreg-bkb-"))
    (tmp / "ours").mkdir()
    (tmp / "theirs").mkdir()
    daemons = []
    try:
        proc, addr, buildctl = start_buildkitd(tmp / "ours")
        daemons.append(proc)
        hand_proc, hand_addr, _ = start_buildkitd(tmp / "theirs")
        daemons.append(hand_proc)
        ctx, dockerfile = make_project(tmp, args.files)
        changed = ctx / "src" / "pkg00" / "mod0000.py"
        index = ContextIndex(ctx, dockerfile)
        index.scan()
        backend = BuildkitBackend(
            LocalTransport(workroot=str(tmp)), push_host=REGISTRY, addr=addr, buildctl=str(buildctl)
        )
        image = Image("app", "localhost:31234/bench/app", (), dockerfile, ctx, {}, None, "docker",
                      "devspace.yaml", 1, 1)  # fmt: skip
        counter = iter(range(10**6))

        def change() -> int:
            n = next(counter)
            changed.write_text(f"# change {n}\n" + "x = 1\n" * 300)
            return n

        def devreg() -> float:
            n = change()
            t = time.perf_counter()
            index.update([changed])
            request = BuildRequest(
                image, "localhost:31234/bench/devreg", f"r{n}", ctx, index.snapshot().files(),
                dockerfile, push=True,
            )  # fmt: skip
            backend.build(request, log=lambda _: None, cancel=threading.Event())
            return time.perf_counter() - t

        def by_hand() -> float:
            n = change()
            t = time.perf_counter()
            subprocess.run(
                [str(buildctl), "--addr", hand_addr, "build", "--frontend", "dockerfile.v0",
                 "--local", f"context={ctx}", "--local", f"dockerfile={ctx}",
                 "--opt", "filename=Dockerfile",
                 "--output", f"type=image,name={REGISTRY}/bench/hand:r{n},push=true,"
                 "registry.insecure=true", "--progress", "plain"],
                check=True, capture_output=True,
            )  # fmt: skip
            return time.perf_counter() - t

        ours, theirs = measure(devreg, by_hand, args.runs)
        return report(
            f"one-file change, build + push, {args.files} files; {args.runs} runs each",
            "devreg (BuildkitBackend, LocalTransport)",
            "buildctl build by hand",
            ours,
            theirs,
        )
    finally:
        for proc in daemons:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
