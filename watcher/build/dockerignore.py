"""Which context files a build sees: ``.dockerignore`` with Docker's semantics.

Matching is the docker SDK's own (``docker.utils.build.PatternMatcher``, a port
of moby's ``fileutils``), so the files devreg hashes, watches and sends are
the files ``docker.utils.build.exclude_paths`` would keep. What is ours is the
choice of ignore file (``<Dockerfile>.dockerignore`` beside the Dockerfile wins
over ``<context>/.dockerignore``, as BuildKit does) and a ``scandir`` walk
that collects each entry's ``stat`` in the same pass (the content-tag cache
needs it, and a second ``stat`` per file doubles the cost of a 20,000-file
context).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from docker.utils.build import PatternMatcher

IGNORE_NAME = ".dockerignore"


def ignore_file(context: Path, dockerfile: Path) -> Path:
    """The ignore file that applies (it may not exist)."""
    specific = dockerfile.with_name(dockerfile.name + IGNORE_NAME)
    if specific.is_file():
        return specific
    return context / IGNORE_NAME


def candidate_ignore_files(context: Path, dockerfile: Path) -> tuple[Path, Path]:
    """Both files whose creation, change or removal changes the filter."""
    return dockerfile.with_name(dockerfile.name + IGNORE_NAME), context / IGNORE_NAME


def read_patterns(path: Path) -> list[str]:
    """Lines of an ignore file the way the docker SDK reads them (blank lines
    and ``#`` comments dropped, whitespace trimmed); a missing file is empty."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return []
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


class ContextFilter:
    """The ignore rules of one (context, Dockerfile) pair."""

    def __init__(self, context: Path, dockerfile: Path) -> None:
        self.context = context
        self.dockerfile = dockerfile
        self.source = ignore_file(context, dockerfile)
        patterns = read_patterns(self.source)
        self.user_patterns = tuple(patterns)
        # ``exclude_paths`` always keeps the Dockerfile (by its path in the
        # context, or ``Dockerfile`` when it lies elsewhere).
        try:
            rel_dockerfile = dockerfile.relative_to(context).as_posix()
        except ValueError:
            rel_dockerfile = "Dockerfile"
        self.matcher = PatternMatcher([*patterns, f"!{rel_dockerfile}"])
        self._exceptions = tuple(p.cleaned_pattern for p in self.matcher.patterns if p.exclusion)
        # Only the implicit ``!Dockerfile``/``!.dockerignore``: nothing is
        # excluded, and matching 20,000 paths can be skipped.
        self._trivial = not any(not p.exclusion for p in self.matcher.patterns)

    def excluded(self, rel: str) -> bool:
        return not self._trivial and bool(self.matcher.matches(rel))

    def pruned(self, rel_dir: str) -> bool:
        """A wholly ignored directory: excluded, and no ``!`` exception could
        bring anything inside it back (the SDK's walk does not descend either)."""
        if not self.excluded(rel_dir):
            return False
        return not any(p.startswith(rel_dir) for p in self._exceptions)

    def walk(self, top: str = "") -> Iterator[tuple[str, os.stat_result]]:
        """Kept entries (files, directories, links) under ``top`` (relative,
        ``""`` for the context) with their ``lstat``; the same set as the
        SDK's ``PatternMatcher.walk``."""
        stack = [top]
        root = str(self.context)
        while stack:
            rel_dir = stack.pop()
            current = os.path.join(root, rel_dir) if rel_dir else root
            try:
                it = os.scandir(current)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            with it:
                for entry in it:
                    rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    excluded = self.excluded(rel)
                    if not excluded:
                        yield rel, st
                    if stat.S_ISDIR(st.st_mode) and not (excluded and self.pruned(rel)):
                        stack.append(rel)

    def watched_dirs(self) -> Iterator[Path]:
        """Directories that need an inotify watch: every directory of the
        context that is not wholly ignored (kept ones and those an exception
        reaches into)."""
        yield self.context
        root = str(self.context)
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            current = os.path.join(root, rel_dir) if rel_dir else root
            try:
                it = os.scandir(current)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            with it:
                for entry in it:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                    if rel == ".git" or rel.endswith("/.git") or self.pruned(rel):
                        continue
                    yield Path(entry.path)
                    stack.append(rel)
