"""Glob patterns confined to a repository (kubectl ``manifests:``).

``glob.glob`` would follow ``/**`` or ``../../../../**/*.yaml`` over the whole
filesystem, follow symlinked directories into loops, and recurse once per
directory level. This walks with an explicit stack from the pattern's literal
prefix, refuses a prefix that leaves the repository, never descends a symlinked
directory for ``**``, keeps every match inside the repository (symlinks
resolved) and stops after :data:`~hookpkg.bounds.MAX_GLOB_ENTRIES` directory
entries. Matching is ``glob``'s: ``*``, ``?`` and ``[…]`` within one name, ``**``
for any number of directories, and names starting with ``.`` only matched by a
pattern that starts with ``.``.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import NamedTuple

from hookpkg.bounds import MAX_GLOB_ENTRIES


class GlobResult(NamedTuple):
    paths: list[Path]  # sorted
    problem: str | None = None  # why the pattern was refused or cut short


def git_root(start: Path) -> Path | None:
    """The git work tree holding ``start`` (a ``.git`` in it or above), or None."""
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return None


def repository_root(directory: Path) -> Path:
    """The git work tree holding ``directory``, else ``directory`` itself."""
    return git_root(directory) or directory


def _magic(part: str) -> bool:
    return any(c in part for c in "*?[")


def inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path``, symlinks resolved, is ``root`` (resolved) or below it."""
    root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _walk_start(
    pattern: str, base: Path, root: Path, root_real: str
) -> tuple[str, list[str]] | GlobResult:
    """Where the walk begins (the pattern's literal head, joined to ``base``) and the
    parts left to match; or the refusal, when it would leave the repository."""
    if os.path.isabs(pattern):
        return GlobResult([], "an absolute path is outside the repository")
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    first_magic = next((i for i, p in enumerate(parts) if _magic(p)), len(parts))
    if ".." in parts[first_magic:]:
        return GlobResult([], "'..' after a wildcard is not supported")
    start = os.path.normpath(os.path.join(base, *parts[:first_magic]))
    if not inside(start, root_real):
        return GlobResult([], f"it reaches outside the repository ({root})")
    return start, parts[first_magic:]


def confined_glob(
    pattern: str, base: Path, root: Path, *, max_entries: int = MAX_GLOB_ENTRIES
) -> GlobResult:
    """Paths matching ``pattern`` relative to ``base``, all inside ``root``."""
    root_real = os.path.realpath(root)
    begun = _walk_start(pattern, base, root, root_real)
    if isinstance(begun, GlobResult):
        return begun
    start, rest = begun
    if not rest:
        return GlobResult([Path(start)] if os.path.lexists(start) else [])
    found: set[str] = set()
    seen: set[tuple[str, int]] = set()
    stack: list[tuple[str, int]] = [(start, 0)]
    entries = 0
    problem = None
    while stack:
        directory, i = stack.pop()
        if (directory, i) in seen:
            continue
        seen.add((directory, i))
        part = rest[i]
        last = i == len(rest) - 1
        if part == "**":
            if last:
                if os.path.isdir(directory):
                    found.add(directory)  # glob's 'k8s/**' includes 'k8s/' (when it is one)
            else:
                stack.append((directory, i + 1))  # zero directories
        try:
            with os.scandir(directory) as listing:
                names = list(listing)
        except OSError:
            continue
        entries += len(names)
        if entries > max_entries:
            problem = f"stopped after {max_entries:,} directory entries"
            break
        for entry in names:
            if entry.name.startswith(".") and not part.startswith("."):
                continue
            if part == "**":
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, i))
                elif last:
                    found.add(entry.path)
                continue
            if not fnmatch.fnmatchcase(entry.name, part):
                continue
            if last:
                found.add(entry.path)
            elif entry.is_dir() and inside(entry.path, root_real):
                stack.append((entry.path, i + 1))
    paths = sorted(Path(p) for p in found if inside(p, root_real))
    return GlobResult(paths, problem)
