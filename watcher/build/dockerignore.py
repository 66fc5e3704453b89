"""Which context files a build sees: ``.dockerignore`` with Docker's semantics.

Matching is the docker SDK's own (``docker.utils.build.PatternMatcher``, a port
of moby's ``fileutils``), so the files devreg hashes, watches and sends are
the files ``docker.utils.build.exclude_paths`` would keep. What is ours is the
choice of ignore file (``<Dockerfile>.dockerignore`` beside the Dockerfile wins
over ``<context>/.dockerignore``, as BuildKit does) and the one walk of the
context tree, :meth:`ContextFilter.walk`: a ``scandir`` walk that collects
each entry's ``lstat`` in the same pass (the content-tag cache needs it, and
a second ``stat`` per file doubles the cost of a 20,000-file context) and
never enters a wholly ignored directory. The content tag hashes what it keeps
and the watcher plans its inotify watches from the directories it entered
and pruned (:mod:`watcher.build.contenttag`, :mod:`watcher.daemon.watch`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from docker.utils.build import PatternMatcher

IGNORE_NAME = ".dockerignore"
Found = tuple[str, os.stat_result]  # a path relative to the context (POSIX) and its lstat


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


class Listing(NamedTuple):
    """What a walk decided about the entries of one directory."""

    kept: list[Found]  # what the build sees (files, directories, links)
    passed: list[str]  # ignored directories entered: a ``!`` exception reaches inside
    pruned: list[str]  # wholly ignored directories, not entered


class ContextFilter:
    """The ignore rules of one (context, Dockerfile) pair."""

    def __init__(self, context: Path, dockerfile: Path) -> None:
        self.context = context
        self.dockerfile = dockerfile
        patterns = read_patterns(ignore_file(context, dockerfile))
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

    def _reaches_into(self, rel_dir: str) -> bool:
        """Whether a ``!`` exception could bring back something inside an
        ignored directory; if none can, the directory is wholly ignored and
        not entered (the SDK's walk does not descend either)."""
        return any(p.startswith(rel_dir) for p in self._exceptions)

    def walk(self, top: str = "") -> Iterator[Listing]:
        """The tree below ``top`` (relative, ``""`` for the whole context),
        one :class:`Listing` per directory read; ``top`` itself first, in a
        listing of its own. The kept entries are the set the SDK's
        ``PatternMatcher.walk`` keeps. A path that vanishes during the walk
        is skipped (its deletion is an event of its own)."""
        root = str(self.context)
        stack: list[str] = []
        if top:
            try:
                st = os.lstat(f"{root}/{top}")
            except OSError:
                return
            yield self._decide([(top, st)], stack)
        else:
            stack.append("")
        while stack:
            rel_dir = stack.pop()
            listed = _list_dir(f"{root}/{rel_dir}" if rel_dir else root, rel_dir)
            if listed is not None:
                yield self._decide(listed, stack)

    def _decide(self, found: list[Found], stack: list[str]) -> Listing:
        """Sort one directory's entries; the directories to enter go on ``stack``."""
        isdir = stat.S_ISDIR
        if self._trivial:
            stack.extend(rel for rel, st in found if isdir(st.st_mode))
            return Listing(found, [], [])
        kept: list[Found] = []
        passed: list[str] = []
        pruned: list[str] = []
        excluded = self.matcher.matches
        for rel, st in found:
            if not excluded(rel):
                kept.append((rel, st))
                if isdir(st.st_mode):
                    stack.append(rel)
            elif isdir(st.st_mode):
                if self._reaches_into(rel):
                    passed.append(rel)
                    stack.append(rel)
                else:
                    pruned.append(rel)
        return Listing(kept, passed, pruned)


def _list_dir(path: str, rel_dir: str) -> list[Found] | None:
    """The entries of one directory with their lstat; ``None`` when it cannot be read."""
    prefix = f"{rel_dir}/" if rel_dir else ""
    found: list[Found] = []
    try:
        it = os.scandir(path)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    with it:
        for d in it:
            try:
                found.append((prefix + d.name, d.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
    return found
