"""In-cluster build path vs ``buildctl build`` by hand (issue 5). Target: ratio <= 1.1.

The same build, a one-file change to a small project (busybox base from the
context, 300 source files, two RUN steps), then push to the registry, done two
ways against one buildkitd started here:

* devreg: :class:`watcher.buildkit.backend.BuildkitBackend` over
  :class:`~watcher.buildkit.transport.LocalTransport` (index update, tar of the
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

    python bench/buildkit.py [--runs N] [--files N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hookpkg.config import Image  # noqa: E402
from watcher.backends import BuildRequest  # noqa: E402
from watcher.buildkit.backend import BuildkitBackend  # noqa: E402
from watcher.buildkit.transport import LocalTransport  # noqa: E402
from watcher.contenttag import ContextIndex  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--files", type=int, default=300)
    args = parser.parse_args()
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

        # Warm-up: the base layers, both ways.
        devreg()
        by_hand()
        ours: list[float] = []
        theirs: list[float] = []
        for i in range(args.runs):
            if i % 2:
                ours.append(devreg())
                theirs.append(by_hand())
            else:
                theirs.append(by_hand())
                ours.append(devreg())
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"one-file change, build + push, {args.files} files; {args.runs} runs each")
        print(f"  devreg (BuildkitBackend, LocalTransport)  median {a * 1000:7.0f} ms  "
              f"(min {min(ours) * 1000:.0f})")  # fmt: skip
        print(f"  buildctl build by hand                    median {b * 1000:7.0f} ms  "
              f"(min {min(theirs) * 1000:.0f})")  # fmt: skip
        ratio = a / b
        verdict = "meets" if ratio <= 1.1 else "MISSES"
        print(f"  ratio devreg / by hand {ratio:.2f} ({verdict} the 1.1 target)")
        return 0 if ratio <= 1.1 else 1
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
