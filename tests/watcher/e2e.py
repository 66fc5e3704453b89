"""Helpers for the watcher's end-to-end and fault tests: a copy of
``examples/hello``, the real ``devreg`` command line, the cluster publishing
a registry (KEP-1755), waiting with deadlines, and processes left behind."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"
T = TypeVar("T")


def wait_for(cond: Callable[[], T | None], *, timeout: float = 60.0, what: str) -> T:
    """Poll ``cond`` until it returns something truthy (a deadline, no sleep
    that a test depends on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def copy_example(dest: Path, *, image: str | None = None, base_image: str | None = None) -> Path:
    """A copy of examples/hello; returns its devspace.yaml. ``image`` renames
    the image (a registry shared by test runs keeps old tags)."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".devreg", ".devreg.env"))
    config = dest / "devspace.yaml"
    if image is not None:
        text = config.read_text().replace("image: ghcr.io/example/hello", f"image: {image}")
        config.write_text(text)
    if base_image is not None:
        dockerfile = dest / "Dockerfile"
        dockerfile.write_text(
            dockerfile.read_text().replace("FROM devreg-test/busybox:latest", f"FROM {base_image}")
        )
    return config


def devreg_argv() -> list[str]:
    """The installed ``devreg`` entry point (what a user runs), else the module."""
    found = shutil.which("devreg")
    return [found] if found else [sys.executable, "-m", "watcher"]


def devreg(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 180.0,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*devreg_argv(), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and done.returncode != 0:
        log = cwd / ".devreg" / "watch.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise AssertionError(
            f"devreg {' '.join(args)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\nwatch.log:\n{tail}"
        )
    return done


def registry_tags(host: str, repository: str) -> list[str]:
    """``GET /v2/<repo>/tags/list`` on a plain-HTTP registry ([] when unknown)."""
    try:
        with urllib.request.urlopen(f"http://{host}/v2/{repository}/tags/list", timeout=5) as r:
            data = json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return []
        raise
    return list(data.get("tags") or [])


@contextlib.contextmanager
def published_registry(testenv: Any, host: str) -> Iterator[None]:
    """The test cluster publishes ``host`` as its local registry (KEP-1755
    ConfigMap ``kube-public/local-registry-hosting``).

    The ConfigMap is cluster-wide and other tests deploy registries on the
    same API server, so it lives only while the caller starts a watcher (which
    reads it once), and test processes take turns through a lock file.
    """
    from watcher.cluster import kep1755
    from watcher.cluster.kube import Kube

    lock_path = Path(testenv.state_dir) / "kep1755.lock"
    with open(lock_path, "a") as lock, Kube(testenv.context) as kube:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": kep1755.NAME, "namespace": kep1755.NAMESPACE},
                "data": {kep1755.KEY: yaml.safe_dump({"host": host})},
            },
            force=True,
        )
        try:
            yield
        finally:
            kube.delete("ConfigMap", kep1755.NAMESPACE, kep1755.NAME)


@contextlib.contextmanager
def no_published_registry(testenv: Any) -> Iterator[None]:
    """While held, no test process publishes a registry (KEP-1755) on the
    shared API server: for tests that need devreg to deploy its own. A
    shared lock on the file :func:`published_registry` locks exclusively."""
    lock_path = Path(testenv.state_dir) / "kep1755.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line or working directory contains
    ``text`` (a test's temporary directory): what a stopped watcher must not
    leave behind."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # a zombie holds no resources; its parent reaps it
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if text in cmdline or text in cwd:
            found.append((int(entry), cmdline))
    return found


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def kubeconfig_with_context(testenv: Any, path: Path, name: str) -> Path:
    """A kubeconfig whose current context is ``name`` (pointing at the test
    API server): ``kind-dev`` for the kind path, ``docker-desktop`` for the
    local-engine path."""
    doc = yaml.safe_load(Path(testenv.kubeconfig).read_text())
    base = next(c for c in doc["contexts"] if c["name"] == testenv.context)
    doc["contexts"].append({"name": name, "context": dict(base["context"])})
    doc["current-context"] = name
    path.write_text(yaml.safe_dump(doc))
    return path


class PrivateDockerd:
    """A second Docker engine of this test's own, so that killing and
    restarting it harms no one else's tests.

    It runs in a network namespace of its own (``unshare --net``, or a named one
    such as the test environment's "away" namespace): dockerd
    creates (and, with ``--bridge=none``, deletes) the host's ``docker0``
    bridge, and the shared engine needs it. Its data root survives a restart,
    as a real engine's does.
    """

    def __init__(self, root: Path, *, netns: str | None = None) -> None:
        self.root = root
        self.netns = netns  # a named network namespace to run in (else a new, empty one)
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 60.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - kept open while it runs
        self.proc = subprocess.Popen(
            [
                *(
                    ["nsenter", f"--net=/var/run/netns/{self.netns}"]
                    if self.netns
                    else ["unshare", "--net", "--"]
                ),
                "dockerd",
                "--host",
                self.host,
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "docker.pid"),
                "--iptables=false",
                "--ip6tables=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        wait_for(self._answers, timeout=timeout, what=f"the private dockerd at {self.host}")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = (self.root / "dockerd.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"the private dockerd exited ({self.proc.returncode}):\n{tail}")
        done = subprocess.run(
            ["docker", "-H", self.host, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it; waits until it is gone."""
        if self.proc is None:
            return
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        wait_for(
            lambda: not group_members(self.proc.pid) if self.proc else True,
            timeout=30,
            what="the private dockerd's processes to end",
        )
        self.proc = None

    def load(self, image: str) -> None:
        """Copy an image from the shared engine (nothing can be pulled here)."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        assert save.stdout is not None
        subprocess.run(
            ["docker", "-H", self.host, "load"], stdin=save.stdout, check=True, capture_output=True
        )
        save.stdout.close()
        assert save.wait() == 0
