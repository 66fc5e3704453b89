"""The ``buildctl build`` command for one request: a pure function, so tests can
read exactly what runs in the ``buildkitd`` container."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Where the unpacked tar puts things, relative to the build's work directory
# (see :mod:`watcher.build.buildkit.context`).
CONTEXT_DIR = "context"
DOCKERFILE_DIR = "dockerfile"


@dataclass(frozen=True)
class Invocation:
    """One build as buildctl sees it (paths are in the buildkitd environment)."""

    workdir: str  # the unpacked tar: ``<workdir>/context``, ``<workdir>/dockerfile``
    dockerfile_name: str  # the Dockerfile's file name inside ``<workdir>/dockerfile``
    image: str  # ``localhost:5000/org/app:tag``: the name buildkitd pushes
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    # The registry beside buildkitd speaks plain HTTP on loopback.
    insecure: bool = True
    push: bool = True
    addr: str | None = None  # None: buildctl's default (``$BUILDKIT_HOST``)
    buildctl: str = "buildctl"


def output_spec(inv: Invocation) -> str:
    """The ``--output`` value (buildctl reads it as CSV; image names have no
    commas, so no quoting is needed)."""
    parts = ["type=image", f"name={inv.image}", f"push={'true' if inv.push else 'false'}"]
    if inv.insecure:
        parts.append("registry.insecure=true")
    return ",".join(parts)


def build_argv(inv: Invocation) -> tuple[str, ...]:
    argv: list[str] = [inv.buildctl]
    if inv.addr:
        argv += ["--addr", inv.addr]
    workdir = inv.workdir.rstrip("/")
    argv += [
        "build",
        "--frontend",
        "dockerfile.v0",
        "--local",
        f"context={workdir}/{CONTEXT_DIR}",
        "--local",
        f"dockerfile={workdir}/{DOCKERFILE_DIR}",
        "--opt",
        f"filename={inv.dockerfile_name}",
    ]
    # Sorted: the same request gives the same command (readable diffs in
    # tests, and nothing depends on dict order).
    for key, value in sorted(inv.build_args.items()):
        argv += ["--opt", f"build-arg:{key}={value}"]
    if inv.target:
        argv += ["--opt", f"target={inv.target}"]
    argv += ["--output", output_spec(inv), "--progress", "plain"]
    return tuple(argv)
