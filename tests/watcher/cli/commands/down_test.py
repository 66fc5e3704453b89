"""``devreg down [--purge]`` through the command line, against the real API
server: the volume claim of a persistent registry stays unless --purge."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from watcher.cli.main import main
from watcher.cluster.kube import Kube

CONFIG = """\
version: v2beta1
localRegistry:
  localbuild: true
  persistence:
    enabled: true
    size: 1Gi
images:
  app:
    image: ghcr.io/example/app
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def claims(context: str, ns: str) -> list[str]:
    with Kube(context) as kube:
        return sorted(p["metadata"]["name"] for p in kube.list("PersistentVolumeClaim", ns))


def wait_claims(context: str, ns: str, expected: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while claims(context, ns) != expected:
        assert time.monotonic() < deadline, f"claims {claims(context, ns)} != {expected}"
        time.sleep(0.1)


def test_down_keeps_claims_and_purge_deletes_them(
    testenv: Any,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = tmp_path / "devspace.yaml"
    cfg.write_text(CONFIG)
    common = ["-c", str(cfg), "--context", testenv.context, "--namespace", namespace]
    rc, out, err = run(capsys, "up", *common, "--format", "json")
    assert rc == 0, err
    assert json.loads(out)["workload_kind"] == "StatefulSet"
    wait_claims(testenv.context, namespace, ["registry-registry-0"])

    rc, out, err = run(capsys, "down", *common)
    assert rc == 0, err
    assert out.splitlines() == [
        f"removed from namespace {namespace} (context {testenv.context}): "
        "StatefulSet/registry, Service/registry",
        "kept volume claims: registry-registry-0 (`devreg down --purge` deletes them)",
    ]
    assert claims(testenv.context, namespace) == ["registry-registry-0"]

    rc, out, err = run(capsys, "down", *common, "--purge", "--format", "json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["removed"] == ["PersistentVolumeClaim/registry-registry-0"]
    assert doc["kept_claims"] == []
    wait_claims(testenv.context, namespace, [])
