"""hookpkg.pullprobe: the probe image made from bytes, its pod, and the diagnosis of
the kubelet's messages (the messages below are what the real kubelet and containerd
of the test environment's nodes said, and the one from devspace-sh/devspace#2852)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hookpkg import pullprobe


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "amd64"), reason="runs the amd64 ELF")
def test_the_amd64_probe_binary_runs_and_exits_0(tmp_path: Path) -> None:
    binary = tmp_path / "probe"
    binary.write_bytes(pullprobe.exit_zero_elf("amd64"))
    binary.chmod(0o755)
    done = subprocess.run([str(binary)], capture_output=True, timeout=10, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_the_elf_headers_name_each_architecture() -> None:
    for arch, machine in (("amd64", 62), ("arm64", 183)):
        elf = pullprobe.exit_zero_elf(arch)
        assert elf[:4] == b"\x7fELF" and elf[4] == 2  # ELF64
        assert int.from_bytes(elf[18:20], "little") == machine
        entry = int.from_bytes(elf[24:32], "little")
        assert entry == 0x400000 + 120 and len(elf) > 120


def test_the_image_is_reproducible_and_self_consistent() -> None:
    image = pullprobe.probe_image()
    assert pullprobe.probe_image() == image  # same bytes every time: one tag, cached blobs
    index = json.loads(image.index)
    assert index["mediaType"] == pullprobe.MANIFEST_LIST
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}
    assert image.tag == image.index_digest[7:19]
    for entry in index["manifests"]:
        manifest = image.manifests[entry["digest"]]
        assert entry["size"] == len(manifest) and _sha(manifest) == entry["digest"]
        body = json.loads(manifest)
        config = image.blobs[body["config"]["digest"]]
        (layer_ref,) = body["layers"]
        layer = image.blobs[layer_ref["digest"]]
        assert layer_ref["size"] == len(layer)
        tar = gzip.decompress(layer)
        config_doc = json.loads(config)
        assert config_doc["rootfs"]["diff_ids"] == [_sha(tar)]
        assert config_doc["architecture"] == entry["platform"]["architecture"]
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            (member,) = t.getmembers()
            assert (member.name, member.mode) == ("probe", 0o755)
            data = t.extractfile(member)
            assert data is not None
            assert data.read() == pullprobe.exit_zero_elf(config_doc["architecture"])


def test_the_pod_is_pinned_pulls_always_and_runs_restricted() -> None:
    pod = pullprobe.probe_pod(
        namespace="ns", registry="registry", node="n1", image="localhost:1/x:t", run="r1"
    )
    spec = pod["spec"]
    assert spec["nodeName"] == "n1" and spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["imagePullPolicy"] == "Always" and container["image"] == "localhost:1/x:t"
    assert pod["metadata"]["labels"][pullprobe.RUN_LABEL] == "r1"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def _pod(**container: object) -> dict[str, object]:
    return {"status": {"containerStatuses": [container]}}


def test_pull_outcome_reads_the_container_status() -> None:
    assert pullprobe.pull_outcome({"status": {}}) is None
    waiting = _pod(state={"waiting": {"reason": "ContainerCreating"}}, imageID="")
    assert pullprobe.pull_outcome(waiting) is None
    failed = _pod(state={"waiting": {"reason": "ErrImagePull", "message": "boom"}})
    assert pullprobe.pull_outcome(failed) == ("failed", "boom")
    backoff = _pod(state={"waiting": {"reason": "ImagePullBackOff"}})
    assert pullprobe.pull_outcome(backoff) == ("failed", "ImagePullBackOff")
    ran = _pod(state={"terminated": {"exitCode": 0}}, imageID="sha256:abc")
    assert pullprobe.pull_outcome(ran) == ("pulled", "sha256:abc")


HOST = "localhost:30846"
HTTPS_MESSAGE = (
    'failed to pull and unpack image "localhost:30846/devreg/pull-probe:ae3e8c79fbed": '
    'failed to resolve reference "localhost:30846/devreg/pull-probe:ae3e8c79fbed": failed '
    'to do request: Head "https://localhost:30846/v2/devreg/pull-probe/manifests/'
    'ae3e8c79fbed": http: server gave HTTP response to HTTPS client'
)
# devspace-sh/devspace#2852 (k3d), the port made ours.
V6_MESSAGE = (
    'failed to resolve reference "localhost:30846/app:x": failed to do request: Head '
    '"http://localhost:30846/v2/app/manifests/x": dial tcp [::1]:30846: connect: '
    "connection refused"
)
V4_MESSAGE = V6_MESSAGE.replace("[::1]", "127.0.0.1")


def test_https_only_names_the_runtimes_settings() -> None:
    d = pullprobe.diagnose(HTTPS_MESSAGE, HOST)
    assert d.cause == "https-only"
    assert any('server = "http://localhost:30846"' in s for s in d.snippets)
    assert any('location = "localhost:30846"' in s for s in d.snippets)


def test_ipv6_first_localhost_offers_127_0_0_1_when_it_works() -> None:
    d = pullprobe.diagnose(V6_MESSAGE, HOST, v4_works=True)
    assert d.cause == "ipv6-localhost"
    assert "127.0.0.1:30846 works on that node (probed)" in d.says
    assert "DEVREG_NODE_HOST=127.0.0.1" in d.fix
    untried = pullprobe.diagnose(V6_MESSAGE, HOST)
    assert untried.cause == "ipv6-localhost" and "should work" in untried.says


def test_a_refusal_on_both_loopbacks_is_the_node_port_not_the_resolver() -> None:
    # Go dials ::1 first and reports that error even when 127.0.0.1 failed too: the
    # re-probe through 127.0.0.1 tells the two apart.
    assert pullprobe.diagnose(V6_MESSAGE, HOST, v4_works=False).cause == "no-loopback-nodeport"
    d = pullprobe.diagnose(V4_MESSAGE, HOST)
    assert d.cause == "no-loopback-nodeport"
    assert "nftables" in d.says and "127.0.0.1:30846" in d.says


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        ("dial tcp 10.0.0.5:30846: connect: connection refused", "refused"),
        ("dial tcp 127.0.0.1:30846: i/o timeout", "unreachable"),
        ("x509: certificate signed by unknown authority", "tls"),
        (
            'failed to resolve reference "localhost:30846/x:y": localhost:30846/x:y: not found',
            "not-found",
        ),
        ("something new", "unknown"),
    ],
)
def test_other_messages(message: str, cause: str) -> None:
    assert pullprobe.diagnose(message, HOST).cause == cause


def test_the_module_stays_light() -> None:
    # The hook imports hookpkg; this module must not pull tarfile/gzip in at import.
    code = "import sys, hookpkg.pullprobe; print('tarfile' in sys.modules, 'gzip' in sys.modules)"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("message", "refused"),
    [
        ('Head "http://localhost:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused', True),
        ('Head "http://localhost:1/v2/": dial tcp [::1]:1: connect: connection refused', True),
        ('Head "http://localhost:1/v2/": dial tcp 127.0.0.1:1: i/o timeout', False),
        ("server gave HTTP response to HTTPS client", False),
        ("", False),
    ],
)
def test_refused_tells_the_pulls_worth_asking_again(message: str, refused: bool) -> None:
    # A refusal may be a node port its kube-proxy has not programmed yet; nothing else is.
    assert pullprobe.refused(message) is refused
