"""The build-backend seam: what a request names, and how a backend's failure
and cancellation reach the user (a failed build is the user's error, exit 1
with the log's tail; a cancelled one is not an error at all)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hookpkg.config import Image
from hookpkg.errors import FatalError
from watcher.build.backends import BuildCancelled, BuildError, BuildRequest, BuildResult


def _request(repository: str, tag: str) -> BuildRequest:
    image = Image(
        "app", repository, (), Path("/p/Dockerfile"), Path("/p"), {}, None, "docker", "d.yaml", 1, 1
    )
    return BuildRequest(
        image=image,
        repository=repository,
        tag=tag,
        context=Path("/p"),
        files=("Dockerfile",),
        dockerfile=Path("/p/Dockerfile"),
    )


@pytest.mark.parametrize(
    ("repository", "tag", "reference"),
    [
        pytest.param("localhost:31234/org/app", "0f3a", "localhost:31234/org/app:0f3a", id="port"),
        pytest.param("ghcr.io/acme/shop-api", "v1", "ghcr.io/acme/shop-api:v1", id="original"),
        pytest.param("[::1]:5000/app", "t", "[::1]:5000/app:t", id="ipv6-host"),
    ],
)
def test_reference_is_repository_and_tag(repository: str, tag: str, reference: str) -> None:
    assert _request(repository, tag).reference == reference


def test_requests_and_results_are_frozen() -> None:
    request = _request("localhost:1/app", "t")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.tag = "other"  # type: ignore[misc]
    result = BuildResult("localhost:1/app:t", 1.5)
    assert not result.pushed and result.image_id is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.pushed = True  # type: ignore[misc]


def test_a_failed_build_is_the_users_error_with_its_log_tail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from watcher.cli.errors import run_command

    error = BuildError("docker build failed (exit 1) for image 'app'", ("step 2/3", "boom"))
    assert isinstance(error, FatalError) and error.exit_code == 1
    assert error.tail == ("step 2/3", "boom")

    def fails() -> int:
        raise error

    assert run_command(fails) == 1
    err = capsys.readouterr().err
    assert "docker build failed (exit 1) for image 'app'" in err
    assert "Traceback" not in err and "internal error" not in err


def test_a_cancelled_build_is_no_error() -> None:
    """The pipeline catches it and publishes nothing; it must not be taken for
    the user's error (nor for a bug) by a handler of ``FatalError``."""
    assert not issubclass(BuildCancelled, FatalError)
    assert BuildError("x").tail == ()
