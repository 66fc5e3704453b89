"""Which context files a build sees: ``.dockerignore`` with BuildKit's semantics.

BuildKit's Dockerfile frontend reads the ignore file with moby's
``patternmatcher/ignorefile.ReadAll`` and hands the patterns to the client's
file sender, whose walk (``tonistiigi/fsutil`` ``filterFS.Walk``) matches each
path with ``patternmatcher`` (``MatchesUsingParentResults``). This module is
our own reading of those rules (``tests/watcher/build/dockerignore_buildkit_test.py``
checks them against a real buildkitd, case by generated case):

- reading: an UTF-8 BOM is dropped; a line that *starts* with ``#`` is a
  comment (``" #x"`` is a pattern); Go's whitespace is trimmed around the line
  and again after a leading ``!``; the pattern is cleaned like Go's
  ``filepath.Clean`` (``a//b/./c/..`` is ``a/b``, ``/..`` is ``/``) and one
  leading ``/`` is dropped;
- matching is case-sensitive (``Docs`` does not ignore ``docs/``); ``*`` and
  ``?`` never cross a ``/``; ``**`` crosses any number of them (``**/x``
  also matches ``x``, ``a/**`` everything below ``a``); ``\\`` escapes;
  ``[...]`` is a class; the last pattern that matches decides, ``!`` patterns
  re-include;
- a pattern matches a path when it matches the path or one of its parent
  directories, with BuildKit's quirk: a pattern that the walk skipped at a
  directory (an ``!`` pattern while the directory was not ignored, or a plain
  one while it was) is not inherited by what lies below it;
- an ignored directory is still walked when an ``!`` pattern could bring
  back something inside it: when any ``!`` pattern has a glob, every ignored
  directory is walked (BuildKit does the same), otherwise only those that
  some ``!`` pattern names a path below;
- the Dockerfile and the ignore file are context files like any other (unlike
  the classic builder, BuildKit does not keep them when they are ignored);
- ``<Dockerfile>.dockerignore`` beside the Dockerfile wins over
  ``<context>/.dockerignore``.

Patterns BuildKit refuses (a lone ``!``, a malformed ``[`` class, a trailing
``\\``) fail its build; here they match nothing, and the build reports them.
Escapes of letters (``\\d``, ``\\w``…) are regular-expression escapes in
BuildKit's Go ``regexp``; they are matched with Python's ``re`` in ASCII mode,
which reads the common ones alike.

What else is ours is the one walk of the context tree,
:meth:`ContextFilter.walk`: a ``scandir`` walk that collects each entry's
``lstat`` in the same pass (the content-tag cache needs it, and a second
``stat`` per file doubles the cost of a 20,000-file context) and never enters
a wholly ignored directory. The content tag hashes what it keeps and the
watcher plans its inotify watches from the directories it entered and pruned
(:mod:`watcher.build.contenttag`, :mod:`watcher.daemon.watch`).
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

IGNORE_NAME = ".dockerignore"
Found = tuple[str, os.stat_result]  # a path relative to the context (POSIX) and its lstat
# Go's ``unicode.IsSpace`` (``strings.TrimSpace``); Python's ``str.strip()``
# would also trim \x1c-\x1f.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_REGEX_ESCAPED = frozenset(".+()|{}$")  # escaped by patternmatcher before regexp.Compile
_GLOB_CHARS = frozenset("*[]?^\\")  # fsutil: an ``!`` pattern with these is not a plain path


def ignore_file(context: Path, dockerfile: Path) -> Path:
    """The ignore file that applies (it may not exist)."""
    specific = dockerfile.with_name(dockerfile.name + IGNORE_NAME)
    if specific.is_file():
        return specific
    return context / IGNORE_NAME


def candidate_ignore_files(context: Path, dockerfile: Path) -> tuple[Path, Path]:
    """Both files whose creation, change or removal changes the filter."""
    return dockerfile.with_name(dockerfile.name + IGNORE_NAME), context / IGNORE_NAME


def clean_path(path: str) -> str:
    """Go's ``filepath.Clean`` on Linux (``posixpath.normpath`` keeps a leading ``//``)."""
    if not path:
        return "."
    rooted = path[0] == "/"
    parts: list[str] = []
    for part in path.split("/"):
        if part == "" or part == ".":
            continue
        if part != "..":
            parts.append(part)
        elif parts and parts[-1] != "..":
            parts.pop()
        elif not rooted:
            parts.append("..")
    joined = "/".join(parts)
    if rooted:
        return "/" + joined
    return joined or "."


def parse_patterns(text: str) -> list[str]:
    """The patterns of an ignore file's text, as ``ignorefile.ReadAll`` reads them."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # bufio's line scanner gives no empty token after a final newline
    patterns: list[str] = []
    for number, line in enumerate(lines):
        if number == 0:
            line = line.removeprefix("\ufeff")
        line = line.removesuffix("\r")
        if line.startswith("#"):
            continue
        pattern = line.strip(_GO_SPACE)
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = pattern[1:].strip(_GO_SPACE)
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def read_patterns(path: Path) -> list[str]:
    """The patterns of an ignore file; a missing file has none. Bytes that are
    not UTF-8 stay as they are (``surrogateescape``, as ``os.scandir`` names
    files), so they match the same bytes in file names, as in Go."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    return parse_patterns(data.decode("utf-8", "surrogateescape"))


class Pattern(NamedTuple):
    """One pattern, compiled (``patternmatcher.Pattern``)."""

    text: str  # cleaned, without the ``!``
    exclusion: bool  # a ``!`` pattern: re-includes what it matches
    matches: Callable[[str], bool]


def _never(path: str) -> bool:
    return False


def _valid_glob(pattern: str) -> bool:
    """Whether Go's ``filepath.Match`` accepts ``pattern`` (``patternmatcher.New``
    checks with it): every ``\\`` escapes something, every ``[`` class is closed
    and holds at least one character or range."""
    i, n = 0, len(pattern)

    def char(i: int) -> int:  # one class character (maybe escaped); -1: malformed
        if i >= n or pattern[i] in "-]":
            return -1
        if pattern[i] == "\\":
            i += 1
            if i >= n:
                return -1
        if "\udc80" <= pattern[i] <= "\udcff":  # a byte that is not UTF-8
            return -1
        return i + 1 if i + 1 < n else -1

    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return False
            i += 2
        elif c == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            ranges = 0
            while not (i < n and pattern[i] == "]" and ranges):
                i = char(i)
                if i < 0:
                    return False
                if pattern[i] == "-":
                    i = char(i + 1)
                    if i < 0:
                        return False
                ranges += 1
            i += 1
        else:
            i += 1
    return True


def compile_pattern(text: str) -> Callable[[str], bool]:
    """The match function of one cleaned pattern (without ``!``), built the way
    ``Pattern.compile`` builds it: an exact comparison, a prefix (``a/**``), a
    suffix (``**/a``) or a regular expression."""
    regex = ["^"]
    kind = "exact"
    i, n, step = 0, len(text), 0
    while i < n:
        c = text[i]
        i += 1
        if c == "*":
            if i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":
                    i += 1  # ``**/`` is ``**``
                if i >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regex.append(".*")
                        kind = "regex"
                else:
                    regex.append("(.*/)?")  # any number of directories, even none
                    kind = "regex"
                if step == 0:
                    kind = "suffix"
            else:
                regex.append("[^/]*")
                kind = "regex"
        elif c == "?":
            regex.append("[^/]")
            kind = "regex"
        elif c in _REGEX_ESCAPED:
            regex.append("\\" + c)
        elif c == "\\":
            if i < n:
                regex.append("\\" + text[i])
                i += 1
                kind = "regex"
            else:
                regex.append("\\\\")
        elif c == "[" or c == "]":
            regex.append(c)
            kind = "regex"
        else:
            regex.append(c)
        step += 1
    return _match_function(kind, text, regex)


def _match_function(kind: str, text: str, regex: list[str]) -> Callable[[str], bool]:
    """The compiled pattern: a comparison for the simple kinds, else the regex."""
    if kind == "exact":
        return text.__eq__
    if kind == "prefix":
        return _starts_with(text[:-2])
    if kind == "suffix":
        return _ends_with(text[2:])
    regex.append(r"\Z")  # Go's ``$``: the end of the text, never before a final newline
    try:
        source = "".join(regex)
        if "[:" in source:
            source = _posix_classes(source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible nested set" and the like
            compiled = re.compile(source, re.ASCII)
    except re.error:
        return _never  # Go's regexp refuses it too: BuildKit's build fails
    match = compiled.match
    return lambda path: match(path) is not None


# Go's regexp reads ``[:name:]`` inside a class as a POSIX class (ASCII).
_POSIX_CLASSES = {
    "alnum": ((48, 57), (65, 90), (97, 122)),
    "alpha": ((65, 90), (97, 122)),
    "ascii": ((0, 127),),
    "blank": ((9, 9), (32, 32)),
    "cntrl": ((0, 31), (127, 127)),
    "digit": ((48, 57),),
    "graph": ((33, 126),),
    "lower": ((97, 122),),
    "print": ((32, 126),),
    "punct": ((33, 47), (58, 64), (91, 96), (123, 126)),
    "space": ((9, 13), (32, 32)),
    "upper": ((65, 90),),
    "word": ((48, 57), (65, 90), (95, 95), (97, 122)),
    "xdigit": ((48, 57), (65, 70), (97, 102)),
}
_POSIX_CLASS = re.compile(r"\[:(\^?)([a-z]*):\]")


def _posix_classes(regex: str) -> str:
    """``regex`` with each ``[:name:]`` inside a bracket class spelled out as
    ranges, as Python's ``re`` has no POSIX classes; an unknown name is an
    error, as in Go."""
    out: list[str] = []
    i, n = 0, len(regex)
    in_class = first = False
    while i < n:
        c = regex[i]
        if c == "\\":
            out.append(regex[i : i + 2])
            i += 2
            first = False
            continue
        if not in_class:
            out.append(c)
            i += 1
            if c == "[":
                in_class = first = True
                if i < n and regex[i] == "^":
                    out.append("^")
                    i += 1
            continue
        if c == "]" and not first:  # ``]`` first in a class is a character
            in_class = False
            out.append(c)
            i += 1
            continue
        first = False
        named = _POSIX_CLASS.match(regex, i)
        if named is None:
            out.append(c)
            i += 1
            continue
        ranges = _POSIX_CLASSES.get(named[2])
        if ranges is None:
            raise re.error(f"invalid character class {named[0]}")
        if named[1]:  # ``[:^name:]``: everything else
            edges = [-1, *(x for r in ranges for x in r), 0x110000]
            ranges = tuple(
                (edges[k] + 1, edges[k + 1] - 1)
                for k in range(0, len(edges), 2)
                if edges[k] + 1 <= edges[k + 1] - 1
            )
        out.extend(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)
        i = named.end()
    return "".join(out)


def _starts_with(prefix: str) -> Callable[[str], bool]:
    return lambda path: path.startswith(prefix)


def _ends_with(suffix: str) -> Callable[[str], bool]:
    if suffix.startswith("/"):
        bare = suffix[1:]  # ``**/foo`` matches ``foo`` too
        return lambda path: path.endswith(suffix) or path == bare
    return lambda path: path.endswith(suffix)


def compile_patterns(patterns: Iterable[str]) -> tuple[Pattern, ...]:
    """``patternmatcher.New``: trimmed and cleaned once more, ``!`` split off.
    A pattern BuildKit refuses is left out (see the module's doc)."""
    compiled: list[Pattern] = []
    for raw in patterns:
        text = raw.strip(_GO_SPACE)
        if not text:
            continue
        text = clean_path(text)
        exclusion = text[0] == "!"
        if exclusion:
            text = text[1:]
            if not text:
                continue
        if not _valid_glob(text):
            continue
        compiled.append(Pattern(text, exclusion, compile_pattern(text)))
    return tuple(compiled)


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
        self.patterns = compile_patterns(read_patterns(ignore_file(context, dockerfile)))
        exceptions = [p.text for p in self.patterns if p.exclusion]
        # fsutil enters an ignored directory only when an ``!`` pattern could
        # bring something back inside it: with a glob in any of them (past a
        # trailing ``/*`` or ``/**``) always; otherwise when one names a path
        # below the directory.
        stripped = [_without_trailing_glob(p) for p in exceptions]
        self._walk_all_ignored = any(_GLOB_CHARS.intersection(p) for p in stripped)
        self._exception_dirs = tuple(p + "/" for p in stripped)
        # No pattern at all: nothing is ignored, and matching 20,000 paths
        # can be skipped.
        self._trivial = not self.patterns

    def excluded(self, rel: str, parent: int = 0) -> tuple[bool, int]:
        """Whether ``rel`` is ignored, given the match bits of its parent
        directory (0 for the context itself), and its own match bits: bit
        ``i`` is set when pattern ``i`` matched ``rel`` or a parent of it
        (``MatchesUsingParentResults``). A pattern that cannot change the
        outcome at this point (an ``!`` pattern while ``rel`` is not ignored,
        a plain one while it is) is not even tried, and its bit stays clear."""
        matched = False
        bits = 0
        bit = 1
        for p in self.patterns:
            # Inherited from the parent, or tried here.
            if parent & bit or (p.exclusion == matched and p.matches(rel)):
                bits |= bit
                matched = not p.exclusion
            bit <<= 1
        return matched, bits

    def _enters(self, rel_dir: str) -> bool:
        """Whether fsutil walks into the ignored directory ``rel_dir``; if not,
        it is wholly ignored and not entered here either."""
        if self._walk_all_ignored:
            return True
        prefix = rel_dir + "/"
        return any(p.startswith(prefix) for p in self._exception_dirs)

    def _reach(self, top: str) -> int | None:
        """The match bits of the directory holding ``top``, deciding each
        parent from the context down; ``None`` when one of them is pruned (the
        build never sees anything below it)."""
        bits = 0
        parts = top.split("/")[:-1]
        for depth in range(len(parts)):
            rel = "/".join(parts[: depth + 1])
            ignored, bits = self.excluded(rel, bits)
            if ignored and not self._enters(rel):
                return None
        return bits

    def walk(self, top: str = "") -> Iterator[Listing]:
        """The tree below ``top`` (relative, ``""`` for the whole context),
        one :class:`Listing` per directory read; ``top`` itself first, in a
        listing of its own (none when a parent of ``top`` is pruned). A path
        that vanishes during the walk is skipped (its deletion is an event of
        its own)."""
        root = str(self.context)
        stack: list[tuple[str, int]] = []
        if top:
            parent = 0 if self._trivial else self._reach(top)
            if parent is None:
                return
            try:
                st = os.lstat(f"{root}/{top}")
            except OSError:
                return
            yield self._decide([(top, st)], parent, stack)
        else:
            stack.append(("", 0))
        while stack:
            rel_dir, bits = stack.pop()
            listed = _list_dir(f"{root}/{rel_dir}" if rel_dir else root, rel_dir)
            if listed is not None:
                yield self._decide(listed, bits, stack)

    def _decide(self, found: list[Found], parent: int, stack: list[tuple[str, int]]) -> Listing:
        """Sort one directory's entries (``parent``: the directory's match
        bits); the directories to enter go on ``stack`` with their own bits."""
        isdir = stat.S_ISDIR
        if self._trivial:
            stack.extend((rel, 0) for rel, st in found if isdir(st.st_mode))
            return Listing(found, [], [])
        kept: list[Found] = []
        passed: list[str] = []
        pruned: list[str] = []
        excluded = self.excluded
        for rel, st in found:
            ignored, bits = excluded(rel, parent)
            if not ignored:
                kept.append((rel, st))
                if isdir(st.st_mode):
                    stack.append((rel, bits))
            elif isdir(st.st_mode):
                if self._enters(rel):
                    passed.append(rel)
                    stack.append((rel, bits))
                else:
                    pruned.append(rel)
        return Listing(kept, passed, pruned)


def _without_trailing_glob(pattern: str) -> str:
    """fsutil's ``patternWithoutTrailingGlob``: ``a/**`` and ``a/*`` are ``a``."""
    return pattern.removesuffix("/**").removesuffix("/*")


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
