"""The pull probe on the test environment's real nodes (issue 14).

1. Probe time for one node and for two (``watcher.cluster.pullprobe``'s pods, created
   together): seconds per run, and the ratio two/one (nodes probed in parallel: goal
   close to 1; goal per node <= 2 s).
2. Its cost on a warm ``devreg up`` (registry ready, probe result cached):
   ``devreg up`` against ``devreg up --no-probe`` in the same run, alternated. Goal:
   ratio <= 1.10.

Needs ``scripts/testenv up`` (part ``nodes``): ``eval "$(scripts/testenv env)"`` first.

    python bench/probe.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]

from hookpkg import pullprobe as pure  # noqa: E402  (after sys.path)
from watcher.cluster import pullprobe  # noqa: E402
from watcher.cluster.kube import Kube  # noqa: E402


def _devreg(project: Path, *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [shutil.which("devreg") or "devreg", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"devreg {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return took


def real_nodes(kube: Kube) -> list[str]:
    return sorted(
        n["metadata"]["name"]
        for n in kube.list("Node", None)
        if str(n["status"]["nodeInfo"]["containerRuntimeVersion"]).startswith("containerd://")
        and pullprobe.why_not_probed(n) is None
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    namespace = f"bench-probe-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "hello"
        shutil.copytree(REPO / "examples" / "hello", project)
        _devreg(project, "up", "-n", namespace, "--no-probe")
        with Kube(None) as kube:
            service = kube.get("Service", namespace, "registry")
            assert service is not None
            port = service["spec"]["ports"][0]["nodePort"]
            host = f"localhost:{port}"
            pullprobe.push_probe_image(host, pure.probe_image())
            nodes = real_nodes(kube)
            if len(nodes) < 2:
                raise SystemExit(f"needs two real nodes, found {nodes}")
            one: list[float] = []
            two: list[float] = []
            for _ in range(args.runs):
                for group, times in (([nodes[0]], one), (nodes[:2], two)):
                    started = time.perf_counter()
                    found = pullprobe._probe_nodes(kube, namespace, "registry", host, group, 30)
                    times.append(time.perf_counter() - started)
                    bad = [r for r in found.values() if r.state != "pulled"]
                    if bad:
                        raise SystemExit(f"a node did not pull: {bad}")
        _devreg(project, "up", "-n", namespace)  # the probe once, cached
        with_probe: list[float] = []
        without: list[float] = []
        for _ in range(args.runs * 2):
            with_probe.append(_devreg(project, "up", "-n", namespace))
            without.append(_devreg(project, "up", "-n", namespace, "--no-probe"))
        subprocess.run(
            [
                os.environ.get("DEVREG_TEST_KUBECTL", "kubectl"),
                "delete",
                "namespace",
                namespace,
                "--wait=false",
            ],
            capture_output=True,
            check=False,
        )
    m1, m2 = statistics.median(one), statistics.median(two)
    print(f"probe, 1 node : median {m1:.3f} s ({', '.join(f'{t:.2f}' for t in one)})")
    print(f"probe, 2 nodes: median {m2:.3f} s ({', '.join(f'{t:.2f}' for t in two)})")
    print(
        f"2 nodes / 1 node: {m2 / m1:.2f} (parallel: goal ~1); per node {m2 / 2:.2f} s (goal <= 2)"
    )
    w, wo = statistics.median(with_probe), statistics.median(without)
    print(f"warm up, probe cached: median {w:.3f} s; --no-probe: median {wo:.3f} s")
    print(f"ratio (cached probe / no probe): {w / wo:.2f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
