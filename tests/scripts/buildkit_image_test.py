"""The BuildKit sidecar image of scripts/testenv (part ``buildkit``) against itself: what
``localbuild: false`` on the real nodes relies on (the product's own tests are in
tests/watcher/build/buildkit/real_pod_test.py).

The image is laid out as ``moby/buildkit:master-rootless`` (user 1000, rootlesskit
first, ``$BUILDKIT_HOST`` in ``$XDG_RUNTIME_DIR``), its ``newuidmap``/``newgidmap``
carry file capabilities through ``docker save`` (the layer's PAX header), it is in every
real node's containerd under the Docker image's id, and it runs rootless with only
seccomp unconfined: no capability added, nothing privileged.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.testenv import RealNode, TestEnv
from tests.scripts.testenv_test import wait_until

pytestmark = pytest.mark.testenv


def docker(testenv: TestEnv, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [testenv.docker_cli, *args],
        env={**os.environ, "DOCKER_HOST": testenv.docker_host},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_image_is_laid_out_as_upstreams_rootless_one(testenv: TestEnv, buildkit_image: str) -> None:
    inspect = docker(testenv, "image", "inspect", buildkit_image)
    assert inspect.returncode == 0, inspect.stderr
    config = json.loads(inspect.stdout)[0]["Config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["rootlesskit", "buildkitd"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["BUILDKIT_HOST"] == "unix:///run/user/1000/buildkit/buildkitd.sock"
    assert env["XDG_RUNTIME_DIR"] == "/run/user/1000"
    assert "/home/user/.local/share/buildkit" in config["Volumes"]


def test_idmap_tools_carry_file_capabilities_through_docker_save(
    testenv: TestEnv, buildkit_image: str
) -> None:
    """``COPY`` from a build context drops xattrs; the image sets them in a stage and
    ``docker save`` (what the nodes import) keeps them."""
    env = {**os.environ, "DOCKER_HOST": testenv.docker_host}
    saved = subprocess.run(
        [testenv.docker_cli, "save", buildkit_image], env=env, capture_output=True, check=True
    ).stdout
    caps: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    with tarfile.open(fileobj=io.BytesIO(saved)) as image:
        for member in image.getmembers():
            if not member.name.endswith("layer.tar"):
                continue
            layer_file = image.extractfile(member)
            assert layer_file is not None
            with tarfile.open(fileobj=io.BytesIO(layer_file.read())) as layer:
                for entry in layer.getmembers():
                    if entry.name in ("usr/bin/newuidmap", "usr/bin/newgidmap"):
                        value = entry.pax_headers.get("SCHILY.xattr.security.capability")
                        if value is not None:
                            caps[entry.name] = value.encode("utf-8", "surrogateescape")
                        modes[entry.name] = entry.mode
    assert set(caps) == {"usr/bin/newuidmap", "usr/bin/newgidmap"}
    # vfs_cap_data: magic/version, then permitted bits; CAP_SETGID is 6, CAP_SETUID 7.
    uid_permitted = int.from_bytes(caps["usr/bin/newuidmap"][4:8], "little")
    gid_permitted = int.from_bytes(caps["usr/bin/newgidmap"][4:8], "little")
    assert uid_permitted == 1 << 7 and gid_permitted == 1 << 6
    assert all(not mode & 0o4000 for mode in modes.values())  # no setuid bit


def test_image_is_in_every_real_node(
    testenv: TestEnv, real_nodes: list[RealNode], buildkit_image: str
) -> None:
    image_id = docker(testenv, "image", "inspect", "-f", "{{.Id}}", buildkit_image).stdout.strip()
    crictl = os.environ["DEVREG_TEST_CRICTL"]
    for node in real_nodes:
        sock = Path(testenv.state_dir) / "nodes" / node.name / "containerd.sock"
        ids = subprocess.run(
            [crictl, "--runtime-endpoint", f"unix://{sock}", "images", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        assert image_id in ids, node.name


def test_runs_rootless_with_seccomp_unconfined_only(testenv: TestEnv, buildkit_image: str) -> None:
    """In the Docker engine, as a pod gets it from a real kubelet (real_pod_test.py):
    no capability added, not privileged; buildkitd answers with a worker whose
    process mode is ``no-sandbox``."""
    name = f"devreg-bk-{uuid.uuid4().hex[:8]}"
    run = docker(
        testenv,
        "run", "-d", "--name", name, "--security-opt", "seccomp=unconfined",
        buildkit_image, "--oci-worker-no-process-sandbox",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    try:

        def workers() -> Any:
            done = docker(testenv, "exec", name, "buildctl", "debug", "workers", "-v")
            return done.returncode == 0 and done.stdout

        out = wait_until("buildctl debug workers", workers, 60)
        assert "org.mobyproject.buildkit.worker.oci.process-mode:\tno-sandbox" in out
        top = docker(testenv, "exec", name, "cat", "/proc/1/status").stdout
        assert "Uid:\t1000" in top  # rootlesskit, as the container's user
    finally:
        docker(testenv, "rm", "-f", name)
