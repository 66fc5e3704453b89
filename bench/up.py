"""``devreg up`` when the registry already exists and is ready (what every
watcher start does), next to ``kubectl get deployment,service -n NS`` in the
same run. Target: ratio <= 2 (no redundant work).

Needs the test environment's API server (``scripts/testenv env`` prints
``KUBECONFIG``) and Debian's ``docker-registry``. The registry is deployed
once into a scratch namespace; a real registry process then listens on
``127.0.0.1:<nodePort>`` so that ``localhost:<nodePort>`` answers, as on a
kind or minikube cluster (the test environment has no kube-proxy), and
``up`` takes its usual path without a port-forward.

Both commands run as the user runs them: a new process each time, the
interpreter called directly (not through a pyenv shim), byte-code cached as
an installed package has it (this session sets PYTHONDONTWRITEBYTECODE, so
the cache goes to a temporary PYTHONPYCACHEPREFIX, warmed first).

    python bench/up.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]

from tests.watcher.registries import wait_answering  # noqa: E402  (after sys.path)

CONFIG = (
    "version: v2beta1\nlocalRegistry:\n  localbuild: true\nimages:\n  app:\n    image: org/app\n"
)


def _time(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    kubectl = shutil.which("kubectl")
    registry_bin = os.environ.get("DEVREG_TEST_REGISTRY_BIN", "/usr/bin/docker-registry")
    if "KUBECONFIG" not in os.environ or kubectl is None:
        raise SystemExit('needs KUBECONFIG (eval "$(scripts/testenv env)") and kubectl')
    context = os.environ.get("DEVREG_TEST_KUBE_CONTEXT", "devreg-test")
    namespace = f"devreg-bench-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="devreg-bench-up-") as tmp:
        root = Path(tmp)
        (root / "devspace.yaml").write_text(CONFIG)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        env["PYTHONPATH"] = str(REPO)
        up = [
            sys.executable, "-m", "watcher", "up", "-c", str(root / "devspace.yaml"),
            "--context", context, "--namespace", namespace, "--format", "json",
        ]  # fmt: skip
        get = [kubectl, "--context", context, "get", "deployment,service", "-n", namespace]
        # Deploys the registry. Without kube-proxy here nothing answers on the
        # node port yet, so this first `up` fails after its --timeout; the
        # node port is then read from the Service.
        first = subprocess.run(
            [*up, "--timeout", "5"], env=env, capture_output=True, text=True, check=False
        )
        port_of = [kubectl, "--context", context, "get", "service", "registry", "-n", namespace]
        read = subprocess.run(
            [*port_of, "-o", "jsonpath={.spec.ports[0].nodePort}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if read.returncode != 0 or not read.stdout.strip().isdigit():
            raise SystemExit(f"devreg up did not deploy the registry:\n{first.stderr}")
        node_port = int(read.stdout)
        (root / "reg.yml").write_text(
            "version: 0.1\nlog: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
            f'http: {{addr: "127.0.0.1:{node_port}"}}\n'
        )
        node = subprocess.Popen(
            [registry_bin, "serve", str(root / "reg.yml")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_answering("127.0.0.1", node_port)
            check = subprocess.run(up, env=env, capture_output=True, text=True, check=True)
            assert json.loads(check.stdout)["reach"] == "localhost", check.stdout
            _time(up, env, 2)  # warm: byte-code cache, page cache
            _time(get, env, 2)
            # Interleaved rounds, so that load from other processes hits both alike.
            ups: list[float] = []
            gets: list[float] = []
            for _ in range(args.runs):
                ups += _time(up, env, 1)
                gets += _time(get, env, 1)
        finally:
            node.terminate()
            node.wait()
            subprocess.run(
                [kubectl, "--context", context, "delete", "namespace", namespace, "--wait=false"],
                capture_output=True,
                check=False,
            )
    up_ms, get_ms = statistics.median(ups) * 1000, statistics.median(gets) * 1000
    print(f"runs: {args.runs} each, interleaved; medians (min)")
    print(f"  devreg up (ready registry)            {up_ms:7.1f} ms  ({min(ups) * 1000:.1f})")
    print(f"  kubectl get deployment,service -n NS  {get_ms:7.1f} ms  ({min(gets) * 1000:.1f})")
    print(f"  ratio devreg/kubectl                  {up_ms / get_ms:7.2f}  (target <= 2)")


if __name__ == "__main__":
    main()
