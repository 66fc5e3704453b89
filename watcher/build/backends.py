"""The build-backend seam: how one image gets built (and maybe delivered).

The local backend (``watcher.build.local``) drives a BuildKit-capable Docker
CLI; the in-cluster backend (BuildKit sidecar, issue 5) sends the context to
the registry pod. The pipeline (``watcher.build.pipeline``) picks one per image and
does everything around it: tags, skip-if-present, delivery, ``.devreg.env``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hookpkg.config import Image
from hookpkg.errors import FatalError


@dataclass(frozen=True)
class BuildRequest:
    """Everything a backend needs, already decided by the pipeline."""

    image: Image  # the configured image (key, builder, …)
    repository: str  # where it goes: ``localhost:31234/org/app`` or the original
    tag: str  # the content tag (or the configured tag)
    context: Path  # absolute context directory
    # Context files (and directories) that ``.dockerignore`` keeps, relative
    # POSIX paths, sorted: BuildKit's semantics (watcher/build/dockerignore.py).
    files: tuple[str, ...]
    dockerfile: Path  # absolute; may lie outside the context
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    # The pipeline wants the backend to push the result itself (backends that
    # can only produce a pushed image, like the in-cluster one, always do).
    push: bool = False

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class BuildResult:
    reference: str
    seconds: float
    pushed: bool = False  # already in the registry: the pipeline will not push
    image_id: str | None = None


class BuildError(FatalError):
    """The build failed (the user's Dockerfile or context); ``tail`` holds the
    last lines of the build log for the report."""

    def __init__(self, message: str, tail: tuple[str, ...] = ()) -> None:
        super().__init__(message, exit_code=1)
        self.tail = tail


class BuildCancelled(Exception):
    """``cancel`` was set while building; nothing may be published."""


class BuildBackend(Protocol):
    name: str

    def build(
        self,
        request: BuildRequest,
        *,
        log: Callable[[str], None],
        cancel: threading.Event,
    ) -> BuildResult:
        """Build ``request``; raise :class:`BuildError` on failure and
        :class:`BuildCancelled` when ``cancel`` is set (after stopping any
        child process). Called from worker threads, one build per image at a
        time, several images at once."""
        ...
