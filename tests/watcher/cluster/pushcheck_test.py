"""The push-permission check against real registries (Debian's
``docker-registry`` on loopback ports): open, htpasswd, token auth; Docker
config credentials from ``auths``, ``credHelpers`` and ``credsStore`` (the
helpers are small scripts on PATH, run for real); unreachable hosts; and the
HTTPS-first request that every one of these plain-HTTP registries answers in
HTTP, so the retry over HTTP is exercised by each allowed case."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.watcher.registries import free_port, running_registry
from tests.watcher.tokenserver import token_service
from watcher.cluster.pushcheck import (
    Credentials,
    PushChecker,
    find_credentials,
    parse_challenge,
    pick_challenge,
    registry_and_path,
)

USERS = {"alice": "s3cret"}


def docker_config(tmp: Path, doc: dict[str, object]) -> dict[str, str]:
    """An environment whose DOCKER_CONFIG holds ``doc``."""
    directory = tmp / "docker-config"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(doc))
    return {**os.environ, "DOCKER_CONFIG": str(directory)}


@pytest.fixture(autouse=True)
def helpers_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The docker SDK looks for ``docker-credential-*`` on the process's PATH
    (not the PATH of the environment it runs them with): the test's bin
    directory goes there."""
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")


def helper_script(tmp: Path, name: str, username: str, secret: str) -> dict[str, str]:
    """``docker-credential-<name>`` on PATH, answering like a real helper."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 1\n'
        "read server\n"
        f'printf \'{{"ServerURL":"%s","Username":"{username}","Secret":"{secret}"}}\' '
        '"$server"\n'
    )
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def auth_entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def open_registry(tmp_path: Path) -> Iterator[str]:
    with running_registry(tmp_path / "open") as host:
        yield host


@pytest.fixture
def htpasswd_registry(tmp_path: Path) -> Iterator[str]:
    with running_registry(tmp_path / "htpasswd", users=USERS) as host:
        yield host


def test_open_registry_allows_over_http_after_https(open_registry: str, tmp_path: Path) -> None:
    result = PushChecker(env=docker_config(tmp_path, {})).check(f"{open_registry}/org/app:1")
    assert result.allowed, result.reason
    assert result.scheme == "http"  # asked over HTTPS first, answered in HTTP, asked again
    assert result.repository == f"{open_registry}/org/app"


def test_started_upload_is_cancelled(open_registry: str, tmp_path: Path) -> None:
    checker = PushChecker(env=docker_config(tmp_path, {}))
    assert checker.check(f"{open_registry}/org/app").allowed
    # The registry keeps a directory per upload it saw; the API says whether
    # the upload is still open (204) or was cancelled (404).
    uploads = tmp_path / "open/data/docker/registry/v2/repositories/org/app/_uploads"
    (upload,) = uploads.iterdir()
    host, port = open_registry.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", f"/v2/org/app/blobs/uploads/{upload.name}")
    assert conn.getresponse().status == 404
    conn.close()


@pytest.mark.parametrize(
    ("config", "helper", "allowed", "reason"),
    [
        pytest.param(None, None, False, "asks for a login", id="no-docker-config"),
        pytest.param({}, None, False, "has none for it", id="no-entry"),
        pytest.param(
            {"auths": {"HOST": auth_entry("alice", "s3cret")}}, None, True, "accepted", id="auths"
        ),
        pytest.param(
            {"auths": {"http://HOST/v1/": auth_entry("alice", "s3cret")}},
            None,
            True,
            "accepted",
            id="auths-key-with-scheme",
        ),
        pytest.param(
            {"auths": {"HOST": {"username": "alice", "password": "s3cret"}}},
            None,
            True,
            "accepted",
            id="auths-username-password",
        ),
        pytest.param(
            {"auths": {"HOST": auth_entry("alice", "wrong")}},
            None,
            False,
            "blob upload refused: 401",
            id="auths-wrong-password",
        ),
        pytest.param(
            {"credHelpers": {"HOST": "devregtest"}},
            ("devregtest", "alice", "s3cret"),
            True,
            "accepted",
            id="cred-helper",
        ),
        pytest.param(
            {"credsStore": "devregstore", "auths": {"HOST": {}}},
            ("devregstore", "alice", "s3cret"),
            True,
            "accepted",
            id="creds-store",
        ),
        pytest.param(
            {"credHelpers": {"HOST": "missing-helper"}},
            None,
            False,
            "has none for it",
            id="helper-not-installed",
        ),
    ],
)
def test_htpasswd_registry(
    htpasswd_registry: str,
    tmp_path: Path,
    config: dict[str, object] | None,
    helper: tuple[str, str, str] | None,
    allowed: bool,
    reason: str,
) -> None:
    if config is None:
        env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "nothing-here")}
    else:
        doc = json.loads(json.dumps(config).replace("HOST", htpasswd_registry))
        env = docker_config(tmp_path, doc)
    if helper is not None:
        env.update(helper_script(tmp_path, *helper))
    result = PushChecker(env=env).check(f"{htpasswd_registry}/org/app")
    assert result.allowed is allowed, result.reason
    assert reason in result.reason


@pytest.mark.parametrize(
    ("credentials", "allowed", "reason"),
    [
        pytest.param(None, False, "blob upload refused: 401", id="anonymous-gets-pull-only"),
        pytest.param(("alice", "s3cret"), True, "accepted", id="login-gets-push"),
        pytest.param(("alice", "nope"), False, "token service", id="bad-login"),
    ],
)
def test_token_registry(
    tmp_path: Path, credentials: tuple[str, str] | None, allowed: bool, reason: str
) -> None:
    with token_service(tmp_path / "token", USERS) as service:
        auth = service.registry_auth_yaml()
        with running_registry(tmp_path / "reg", auth_yaml=auth) as host:
            auths = {host: auth_entry(*credentials)} if credentials else {}
            env = docker_config(tmp_path, {"auths": auths})
            result = PushChecker(env=env).check(f"{host}/team/app:dev")
    assert result.allowed is allowed, result.reason
    assert reason in result.reason


def test_connection_refused_is_no(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = PushChecker(timeout=2, env=docker_config(tmp_path, {})).check(f"127.0.0.1:{port}/a")
    assert not result.allowed
    assert "connection refused" in result.reason
    assert time.monotonic() - started < 2


def test_silent_host_is_no_within_the_timeout(tmp_path: Path) -> None:
    # A listening socket that never answers: the TCP handshake completes
    # (the kernel's backlog), then nothing, like a firewalled registry.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        result = PushChecker(timeout=0.5, env=docker_config(tmp_path, {})).check(f"{host}/a")
        took = time.monotonic() - started
    assert not result.allowed
    assert "no answer within 0.5 s" in result.reason
    assert took < 3, took


def test_answer_is_cached_per_repository(tmp_path: Path) -> None:
    checker = PushChecker(env=docker_config(tmp_path, {}))
    with running_registry(tmp_path / "reg") as host:
        first = checker.check(f"{host}/org/app:1")
    # The registry is gone; the same repository (another tag) is not asked again,
    # another repository is.
    assert checker.check(f"{host}/org/app:2") is first
    assert not checker.check(f"{host}/org/other").allowed


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        pytest.param("nginx", ("registry-1.docker.io", "library/nginx"), id="hub-official"),
        pytest.param("org/app:1", ("registry-1.docker.io", "org/app"), id="hub-org"),
        pytest.param("docker.io/org/app", ("registry-1.docker.io", "org/app"), id="docker-io"),
        pytest.param("ghcr.io/o/p/img:t", ("ghcr.io", "o/p/img"), id="ghcr"),
        pytest.param("localhost:5000/a", ("localhost:5000", "a"), id="localhost"),
    ],
)
def test_registry_and_path(image: str, expected: tuple[str, str]) -> None:
    assert registry_and_path(image) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(
            'Bearer realm="https://auth.example/token",service="registry.example"',
            ("bearer", {"realm": "https://auth.example/token", "service": "registry.example"}),
            id="bearer",
        ),
        pytest.param('Basic realm="r"', ("basic", {"realm": "r"}), id="basic"),
    ],
)
def test_parse_challenge(header: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_challenge(header) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            ['Basic realm="r"', 'Bearer realm="https://a/t"'],
            ("bearer", {"realm": "https://a/t"}),
            id="bearer-after-basic",
        ),
        pytest.param(
            ["Negotiate x", 'Basic realm="r"'], ("basic", {"realm": "r"}), id="basic-over-unknown"
        ),
        pytest.param(["Negotiate"], ("negotiate", {}), id="unknown"),
        pytest.param([], ("", {}), id="none"),
    ],
)
def test_pick_challenge(headers: list[str], expected: tuple[str, dict[str, str]]) -> None:
    """A registry may send several WWW-Authenticate headers; each is seen."""
    assert pick_challenge(headers) == expected


@pytest.mark.parametrize(
    ("doc", "registry", "expected"),
    [
        pytest.param(
            {"auths": {"https://index.docker.io/v1/": auth_entry("u", "p")}},
            "registry-1.docker.io",
            ("u", "p"),
            id="docker-hub-key",
        ),
        pytest.param(
            {"auths": {"ghcr.io": {"identitytoken": "tok"}}},
            "ghcr.io",
            "tok",
            id="identity-token",
        ),
        pytest.param({"auths": {"quay.io": auth_entry("u", "p")}}, "ghcr.io", None, id="other"),
        pytest.param(
            {"credHelpers": {"ghcr.io": "fake"}, "auths": {"ghcr.io": auth_entry("a", "b")}},
            "ghcr.io",
            ("helper-user", "helper-secret"),
            id="cred-helper-first",
        ),
        pytest.param(
            {"credsStore": "fake", "auths": {"quay.io": {}}},
            "quay.io",
            ("helper-user", "helper-secret"),
            id="creds-store",
        ),
        pytest.param(
            {"credsStore": "fake"},
            "registry-1.docker.io",
            ("helper-user", "helper-secret"),
            id="creds-store-docker-hub",
        ),
        pytest.param(
            {"credHelpers": {"ghcr.io": "missing"}, "auths": {"ghcr.io": auth_entry("a", "b")}},
            "ghcr.io",
            ("a", "b"),
            id="helper-has-none-then-auths",
        ),
        pytest.param(
            {"credHelpers": {"ghcr.io": "notinstalled"}}, "ghcr.io", None, id="helper-absent"
        ),
    ],
)
def test_find_credentials(
    tmp_path: Path, doc: dict[str, object], registry: str, expected: object
) -> None:
    """Through the docker SDK, with real ``docker-credential-*`` scripts on PATH."""
    env = docker_config(tmp_path, doc)
    env.update(helper_script(tmp_path, "fake", "helper-user", "helper-secret"))
    missing = tmp_path / "bin" / "docker-credential-missing"
    missing.write_text("#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n")
    missing.chmod(0o755)
    creds = find_credentials(registry, env)
    if expected is None:
        assert creds is None
    elif isinstance(expected, tuple):
        assert isinstance(creds, Credentials)
        assert (creds.username, creds.password) == expected
    else:
        assert creds is not None and creds.identity_token == expected
