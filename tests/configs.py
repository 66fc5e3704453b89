"""Typed configs built in code, for tests of what reads a ``Config`` (no YAML)."""

from __future__ import annotations

from pathlib import Path

from hookpkg.config import Config, Image, LocalRegistry


def image(key: str, ref: str, builder: str = "docker") -> Image:
    """``images.<key>`` with ``image: <ref>`` built by ``builder``."""
    return Image(
        key=key,
        image=ref,
        tags=(),
        dockerfile=Path("Dockerfile"),
        context=Path("."),
        build_args={},
        target=None,
        builder=builder,  # type: ignore[arg-type]
        file="devspace.yaml",
        line=1,
        col=1,
    )


def config(registry: LocalRegistry, *images: Image) -> Config:
    """A config of ``registry`` and ``images``."""
    return Config(
        path=Path("devspace.yaml"),
        directory=Path("."),
        version="v2beta1",
        local_registry=registry,
        has_local_registry=True,
        images={i.key: i for i in images},
    )
