"""The registry HTTP client against a real registry (Debian's
docker-registry on a loopback port) and real loopback sockets."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.watcher.registries import free_port, running_registry
from watcher.build.pipeline import MANIFEST_TYPES, registry_has
from watcher.cluster.registryhttp import answers_v2, manifest_present, request, wait_v2

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry(tmp_path_factory.mktemp("reg")) as host:
        yield host


def push_manifest(host: str, path: str, tag: str) -> None:
    """A minimal OCI image (a config blob, no layers), through the
    registry's API with the client under test."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    started = request("POST", f"http://{host}/v2/{path}/blobs/uploads/")
    assert started.status == 202, started
    location = started.header("location") or ""
    sep = "&" if "?" in location else "?"
    url = location if location.startswith("http") else f"http://{host}{location}"
    put = request("PUT", f"{url}{sep}digest={digest}", body=config)
    assert put.status == 201, put
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest,
            "size": len(config),
        },
        "layers": [],
    }
    resp = request(
        "PUT",
        f"http://{host}/v2/{path}/manifests/{tag}",
        headers={"Content-Type": OCI_MANIFEST},
        body=json.dumps(manifest).encode(),
    )
    assert resp.status == 201, resp


def test_answers_v2_of_a_registry(registry: str) -> None:
    assert answers_v2(registry) is None


def test_answers_v2_refused() -> None:
    assert answers_v2(f"127.0.0.1:{free_port()}") == "connection refused"


class NotARegistry(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_answers_v2_of_another_server() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotARegistry)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        assert answers_v2(f"127.0.0.1:{httpd.server_address[1]}") == "GET /v2/ answered 404"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_answers_v2_silent_host_within_the_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never answers
        port = listener.getsockname()[1]
        assert answers_v2(f"127.0.0.1:{port}", timeout=0.3) == "no answer within 0.3 s"


def test_wait_v2_returns_once_a_registry_starts_answering(tmp_path: Path) -> None:
    port = free_port()
    started = threading.Event()

    def start_late() -> None:
        # Not before the first try has been refused.
        if started.wait(10):
            with running_registry(tmp_path, port=port):
                done.wait(30)

    done = threading.Event()
    thread = threading.Thread(target=start_late)
    thread.start()
    try:
        assert answers_v2(f"127.0.0.1:{port}") is not None
        started.set()
        assert wait_v2(f"127.0.0.1:{port}", timeout=20) is None
    finally:
        done.set()
        thread.join()


def test_wait_v2_gives_the_last_reason_after_the_timeout_or_a_cancel() -> None:
    host = f"127.0.0.1:{free_port()}"
    error = wait_v2(host, timeout=0.3)
    assert error is not None and "refused" in error
    cancel = threading.Event()
    cancel.set()
    error = wait_v2(host, timeout=60, cancel=cancel)  # at once, not after a minute
    assert error is not None and "refused" in error


def test_manifest_present(registry: str) -> None:
    push_manifest(registry, "team/app", "v1")
    assert manifest_present(registry, "team/app", "v1", accept=MANIFEST_TYPES) is True
    assert manifest_present(registry, "team/app", "v2", accept=MANIFEST_TYPES) is False
    assert manifest_present(f"127.0.0.1:{free_port()}", "team/app", "v1", accept="*/*") is None
    # The pipeline asks through the same client, with the image's repository.
    assert registry_has(registry, f"{registry}/team/app", "v1") is True
    assert registry_has(registry, f"{registry}/team/app", "nope") is False


def test_request_refuses_what_is_not_http(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an http"):
        request("GET", "ftp://example.invalid/")


def test_push_blob_and_put_manifest_push_the_pull_probes_image(registry: str) -> None:
    """The pull probe's image (hookpkg.pullprobe) through push_blob and put_manifest;
    the registry then serves the list and each manifest by the digests made here."""
    from hookpkg import pullprobe
    from watcher.cluster.registryhttp import PushRefused, push_blob, put_manifest

    image = pullprobe.probe_image()
    repo = pullprobe.REPOSITORY
    sent = [push_blob(registry, repo, d, data) for d, data in image.blobs.items()]
    assert sent == [True] * len(image.blobs)
    again = [push_blob(registry, repo, d, data) for d, data in image.blobs.items()]
    assert again == [False] * len(image.blobs)  # HEAD 200: not sent twice
    for digest, manifest in image.manifests.items():
        put_manifest(registry, repo, digest, manifest, media_type=pullprobe.MANIFEST)
    put_manifest(registry, repo, image.tag, image.index, media_type=pullprobe.MANIFEST_LIST)
    got = request(
        "GET",
        f"http://{registry}/v2/{repo}/manifests/{image.tag}",
        headers={"Accept": pullprobe.MANIFEST_LIST},
    )
    assert got.status == 200 and got.body == image.index
    assert got.header("Docker-Content-Digest") == image.index_digest
    for digest, data in image.blobs.items():
        blob = request("GET", f"http://{registry}/v2/{repo}/blobs/{digest}")
        assert blob.status == 200 and blob.body == data
    # A manifest naming a blob the registry lacks is refused, and says so.
    body = json.loads(next(iter(image.manifests.values())))
    body["layers"][0]["digest"] = "sha256:" + "0" * 64
    with pytest.raises(PushRefused, match="answered 400"):
        put_manifest(
            registry, repo, "broken", json.dumps(body).encode(), media_type=pullprobe.MANIFEST
        )
