"""Figures on real nodes (``scripts/testenv``, part ``nodes``), ratios in one run.

1. ``devreg up --no-probe`` from nothing (a new namespace) until the registry answers at
   ``localhost:<nodePort>``, next to doing the same by hand: ``kubectl apply`` of the
   very objects devreg applies, ``kubectl rollout status``, then polling the
   NodePort. Goal: ratio <= 1.1.
2. save -> a new pod Running the new content on a real node: ``devreg watch --exec
   'kubectl set image ...; kubectl rollout status ...'`` next to the same by hand
   (``docker build && docker push && kubectl set image && kubectl rollout status``),
   both on the example project, both timed from the file write until a Running pod
   of the Deployment prints the new marker (a marker of each side's own: nothing
   built by one side is in the build cache of the other). Goal: ratio <= 1.0.
3. ``down nodes`` / ``up nodes`` of the test environment, and the memory (RSS) of
   the whole environment with its two real nodes (``scripts/testenv status``).

Rounds are interleaved (devreg, by hand, devreg, ...) so that machine noise falls on
both. Needs ``eval "$(scripts/testenv up)"``.

    python bench/realnode.py [--rounds N] [--skip-env]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hookpkg import registry_objects as objects  # noqa: E402
from hookpkg.config import LocalRegistry  # noqa: E402  (after sys.path)
from tests.watcher.e2e import copy_example, devreg  # noqa: E402


def need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f'{name} is not set: eval "$(scripts/testenv up)" first')
    return value


KUBECTL = need("DEVREG_TEST_KUBECTL")
DOCKER = os.environ.get("DEVREG_TEST_DOCKER_CLI", "docker")


def kubectl(*args: str, input_text: str | None = None) -> str:
    done = subprocess.run(
        [KUBECTL, *args], input=input_text, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def wait_for(cond: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = cond()
        except Exception:  # noqa: BLE001 - not yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll)


def answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def summary(label: str, ours: list[float], hand: list[float], goal: str) -> None:
    o, h = statistics.median(ours), statistics.median(hand)
    print(
        f"{label}: median of {len(ours)}: devreg {o:.2f} s, by hand {h:.2f} s, "
        f"ratio {o / h:.2f} (goal {goal})"
    )
    print("   each: devreg " + " ".join(f"{t:.2f}" for t in ours))
    print("   each: hand   " + " ".join(f"{t:.2f}" for t in hand))


# --- 1 ---------------------------------------------------------------------------------


def bench_up(tmp: Path, rounds: int) -> None:
    config = tmp / "up" / "devspace.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(
        "version: v2beta1\nlocalRegistry:\n  localbuild: true\n"
        "images:\n  app:\n    image: org/app\n"
    )
    registry = LocalRegistry(localbuild=True)  # as the config says: no BuildKit sidecar
    ours: list[float] = []
    hand: list[float] = []
    namespaces = []
    for _ in range(rounds):
        ns = f"bench-up-{secrets.token_hex(3)}"
        namespaces.append(ns)
        t0 = time.monotonic()
        # The same work as by hand: the pull probe (bench/probe.py) is not part of it.
        devreg("up", "--namespace", ns, "--no-probe", cwd=config.parent)
        ours.append(time.monotonic() - t0)

        ns = f"bench-hand-{secrets.token_hex(3)}"
        namespaces.append(ns)
        docs = [
            objects.namespace_object(ns),
            objects.deployment_object(registry, ns),
            objects.service_object(registry, ns),
        ]
        manifest = yaml.safe_dump_all(docs)
        t0 = time.monotonic()
        kubectl("apply", "-f", "-", input_text=manifest)
        kubectl("-n", ns, "rollout", "status", "deployment/registry", "--timeout=120s")
        port = kubectl(
            "-n", ns, "get", "service", "registry", "-o", "jsonpath={.spec.ports[0].nodePort}"
        )
        wait_for(lambda p=port: answers(f"http://localhost:{p}/v2/"), 60, "the NodePort", 0.05)
        hand.append(time.monotonic() - t0)
    summary(
        "1. up from nothing -> registry answering at localhost:<nodePort>", ours, hand, "<= 1.1"
    )
    for ns in namespaces:
        kubectl("delete", "namespace", ns, "--wait=false")


# --- 2 ---------------------------------------------------------------------------------


def write_marker(project: Path, marker: str) -> None:
    (project / "src" / "hello.sh").write_text(
        f'#!/bin/sh\necho "{marker}"\nwhile true; do sleep 3600; done\n'
    )


def runs_marker(ns: str, app: str, marker: str) -> bool:
    """A Running pod of ``app`` printed ``marker``. In process, through the API (a few
    ms a poll): a kubectl process per poll would load the machine while the build it
    measures runs, and only on the watcher's side."""
    from kubernetes import client, config

    global _core
    if _core is None:
        _core = client.CoreV1Api(config.new_client_from_config())
    for pod in _core.list_namespaced_pod(ns, label_selector=f"app={app}").items:
        live = pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None
        if live and marker in _core.read_namespaced_pod_log(pod.metadata.name, ns):
            return True
    return False


_core: Any = None


def exec_idle(project: Path) -> bool:
    """The watcher's --exec command has finished its run (and none is pending)."""
    status = json.loads((project / ".devreg" / "status.json").read_text())
    run = status.get("exec") or {}
    return run.get("state") in ("ok", "failed") and not run.get("pending")


def bench_save(tmp: Path, rounds: int) -> None:
    ns = f"bench-save-{secrets.token_hex(3)}"
    repo = f"ghcr.io/bench/save-{secrets.token_hex(3)}"
    ours = copy_example(tmp / "ours", image=repo).parent
    hand = copy_example(tmp / "hand", image=f"{repo}-hand").parent
    write_marker(ours, "start")
    write_marker(hand, "start")
    devreg("up", "--namespace", ns, cwd=ours)
    devreg("build", "--namespace", ns, cwd=ours)
    env = dict(
        line[len("export ") :].split("=", 1)
        for line in (ours / ".devreg.env").read_text().splitlines()
        if line.startswith("export ")
    )
    registry = env["DEVREG_REGISTRY"]
    hand_repo = f"{registry}/bench/hand-{secrets.token_hex(3)}"
    docker_env = {**os.environ, "DOCKER_BUILDKIT": "1"}

    def by_hand(tag: str, *, roll: bool = True) -> None:
        image = f"{hand_repo}:{tag}"
        subprocess.run(
            [DOCKER, "build", "-q", "-t", image, str(hand)],
            check=True,
            env=docker_env,
            capture_output=True,
        )
        subprocess.run(
            [DOCKER, "push", "-q", image], check=True, env=docker_env, capture_output=True
        )
        if roll:
            kubectl("-n", ns, "set", "image", "deployment/hand", f"hand={image}")
            kubectl("-n", ns, "rollout", "status", "deployment/hand", "--timeout=120s")

    by_hand(
        "start", roll=False
    )  # the base layers are in the registry for both, as after a first build
    # Both Deployments on one node, the registry's: a pod on the other node pulls
    # across nodes and starts on another containerd, which alone moved the ratio
    # between 0.85 and 1.28 from one run to the next.
    node = kubectl("-n", ns, "get", "pod", "-l", "app=registry", "-o", "jsonpath={..nodeName}")
    for app, image in (("ours", env["RUNTIME_IMAGES_APP"]), ("hand", f"{hand_repo}:start")):
        deployment = yaml.safe_load(
            (REPO / "examples/hello/k8s/deployment.yaml")
            .read_text()
            .replace("image: ghcr.io/example/hello", f"image: {image}")
            .replace("hello", app)
        )
        deployment["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
        kubectl("-n", ns, "apply", "-f", "-", input_text=yaml.safe_dump(deployment))
        kubectl("-n", ns, "rollout", "status", f"deployment/{app}", "--timeout=120s")
    roll = (
        f'{KUBECTL} -n {ns} set image deployment/ours ours="$RUNTIME_IMAGES_APP" && '
        f"{KUBECTL} -n {ns} rollout status deployment/ours --timeout=120s"
    )
    devreg("watch", "--detach", "--namespace", ns, "--exec", roll, cwd=ours)
    ours_times: list[float] = []
    hand_times: list[float] = []
    try:
        wait_for(lambda: runs_marker(ns, "ours", "start"), 120, "the first rollout")
        for i in range(rounds):
            # A marker of each side's own: with one marker for both, the second build
            # found the first's layers in the engine's BuildKit cache (COPY and RUN
            # cached: 0.12 s instead of ~0.45 s), and the second side always won.
            marker = f"m-{secrets.token_hex(4)}"
            t0 = time.monotonic()
            write_marker(ours, marker)
            wait_for(lambda m=marker: runs_marker(ns, "ours", m), 180, "the watcher's pod", 0.1)
            ours_times.append(time.monotonic() - t0)
            wait_for(lambda: exec_idle(ours), 120, "the --exec command to finish")
            marker = f"h-{secrets.token_hex(4)}"
            t0 = time.monotonic()
            write_marker(hand, marker)
            by_hand(f"r{i}")
            wait_for(lambda m=marker: runs_marker(ns, "hand", m), 180, "the hand pod", 0.1)
            hand_times.append(time.monotonic() - t0)
    finally:
        devreg("stop", cwd=ours)
        kubectl("delete", "namespace", ns, "--wait=false")
    summary(
        f"2. save -> new pod Running the new content (real node {node})",
        ours_times,
        hand_times,
        "<= 1.0",
    )


# --- 3 ---------------------------------------------------------------------------------


def script(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    done = subprocess.run(
        [str(REPO / "scripts" / "testenv"), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"scripts/testenv {' '.join(args)} failed:\n{done.stderr}")
    return time.monotonic() - t0, done


def bench_env() -> None:
    down_s, _ = script("down", "nodes")
    up_s, _ = script("up", "nodes")
    print(f"3. scripts/testenv down nodes {down_s:.1f} s, up nodes (warm) {up_s:.1f} s")
    _, status = script("status")
    rss = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"  (\S+): pid \d+, RSS (\d+) MiB", status.stderr)
    }
    nodes = {k: v for k, v in rss.items() if k.endswith(("devreg-node-0", "devreg-node-1"))}
    print(
        f"   RSS of the environment: {sum(rss.values())} MiB in all, of which the two real "
        f"nodes {sum(nodes.values())} MiB: "
        + ", ".join(f"{k} {v}" for k, v in sorted(nodes.items()))
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-env", action="store_true", help="leave the environment alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="devreg-bench-") as tmp:
        bench_up(Path(tmp), args.rounds)
        bench_save(Path(tmp), args.rounds)
    if not args.skip_env:
        bench_env()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
