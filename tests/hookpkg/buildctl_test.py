from __future__ import annotations

import pytest

from hookpkg.buildctl import Invocation, build_argv, output_spec

BASE = (
    "buildctl",
    "build",
    "--frontend",
    "dockerfile.v0",
    "--local",
    "context=/tmp/devreg-build-1/context",
    "--local",
    "dockerfile=/tmp/devreg-build-1/dockerfile",
    "--opt",
    "filename=Dockerfile",
)
OUT = ("--output", "type=image,name=localhost:5000/org/app:abc,push=true,registry.insecure=true")
PROGRESS = ("--progress", "plain")


@pytest.mark.parametrize(
    ("inv", "expected"),
    [
        pytest.param(
            Invocation("/tmp/devreg-build-1", "Dockerfile", "localhost:5000/org/app:abc"),
            (*BASE, *OUT, *PROGRESS),
            id="minimal",
        ),
        pytest.param(
            Invocation("/tmp/devreg-build-1/", "Dockerfile", "localhost:5000/org/app:abc"),
            (*BASE, *OUT, *PROGRESS),
            id="trailing-slash-workdir",
        ),
        pytest.param(
            Invocation(
                "/tmp/devreg-build-1",
                "Dockerfile",
                "localhost:5000/org/app:abc",
                build_args={"B": "2", "A": "x y=z"},
                target="dev",
            ),
            (
                *BASE,
                "--opt",
                "build-arg:A=x y=z",
                "--opt",
                "build-arg:B=2",
                "--opt",
                "target=dev",
                *OUT,
                *PROGRESS,
            ),
            id="build-args-sorted-and-target",
        ),
        pytest.param(
            Invocation(
                "/tmp/devreg-build-1",
                "app.Dockerfile",
                "localhost:5000/org/app:abc",
                addr="unix:///run/buildkit/buildkitd.sock",
                buildctl="/opt/bin/buildctl",
            ),
            (
                "/opt/bin/buildctl",
                "--addr",
                "unix:///run/buildkit/buildkitd.sock",
                *BASE[1:-1],
                "filename=app.Dockerfile",
                *OUT,
                *PROGRESS,
            ),
            id="addr-and-binary-and-dockerfile-name",
        ),
        pytest.param(
            Invocation("/w", "Dockerfile", "127.0.0.1:5001/app:t", insecure=False, push=False),
            (
                "buildctl",
                "build",
                "--frontend",
                "dockerfile.v0",
                "--local",
                "context=/w/context",
                "--local",
                "dockerfile=/w/dockerfile",
                "--opt",
                "filename=Dockerfile",
                "--output",
                "type=image,name=127.0.0.1:5001/app:t,push=false",
                *PROGRESS,
            ),
            id="secure-no-push",
        ),
    ],
)
def test_build_argv(inv: Invocation, expected: tuple[str, ...]) -> None:
    assert build_argv(inv) == expected


def test_empty_target_is_no_target() -> None:
    inv = Invocation("/w", "Dockerfile", "localhost:5000/a:b", target="")
    assert not any(a.startswith("target=") for a in build_argv(inv))


def test_output_spec_is_csv_buildctl_reads() -> None:
    spec = output_spec(Invocation("/w", "Dockerfile", "localhost:5000/org/app:abc"))
    assert dict(kv.split("=", 1) for kv in spec.split(",")) == {
        "type": "image",
        "name": "localhost:5000/org/app:abc",
        "push": "true",
        "registry.insecure": "true",
    }
