"""``.dockerignore`` against the real BuildKit: generated trees and ignore files,
each built by a real buildkitd, and the files it sent compared with the files
devreg hashes and watches.

Which BuildKit: the session's ``buildkitd`` (tests/plugins/buildkit.py), built
from ``github.com/moby/buildkit`` at the version of the in-cluster sidecar
image, so its Dockerfile frontend, ``moby/patternmatcher`` and
``tonistiigi/fsutil`` are the ones devreg's sidecar builds run. A
``FROM scratch`` + ``COPY . /ctx`` build needs no container (no ``RUN``), so
a case costs about 0.3 s, and the cases run a few at a time; one build per
case, because the ignore file is per context. The Docker engine's own BuildKit
on these machines is from Docker 20.10 (2021) and reads patterns with older
code, so it is not the reference here.

Each case (seeded, so a failure names a case that can be run again alone):

* a tree of files, empty directories, dotfiles and symbolic links, up to four
  levels deep, whose names differ only by case (``docs``, ``Docs``), with the
  Dockerfile at the top of the context;
* an ignore file (``.dockerignore``, or ``Dockerfile.dockerignore`` beside the
  Dockerfile, which wins) of patterns made from the tree's own paths with
  their case flipped, ``**`` and ``*`` and ``?`` and classes, ``!``
  re-includes inside ignored directories (plain ones and globbed ones),
  a leading ``/``, a leading ``./``, trailing ``/``, spaces and tabs around
  a pattern and after ``!``, ``.``, ``..``, ``a/../b``, comments, blank
  lines, CRLF line ends and a BOM;
* the build: ``buildctl build`` with the context as both locals, exported with
  ``--output type=local``;
* compared: what ``/ctx`` holds against what devreg's
  :class:`~watcher.build.contenttag.ContextIndex` keeps (with the parents
  of kept entries, which BuildKit sends as parents even when they are
  ignored); every file BuildKit sent lies in a directory devreg's watch plan
  covers; and an edit of each file in the tree changes devreg's context
  digest exactly when BuildKit sent that file (the watcher's incremental
  path, one path at a time).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from watcher.build.contenttag import ContextIndex
from watcher.daemon.watch import plan_schedules

SEED = 20261213
CASES = 80
PARALLEL = 4
BUILD_TIMEOUT = 120
DOCKERFILE = "FROM scratch\nCOPY . /ctx\n"
# Names that differ only by case, dotfiles, a space, glob-looking dots.
NAMES = (
    "docs",
    "Docs",
    "DOCS",
    "src",
    "Src",
    "a",
    "A",
    "b",
    "keep",
    "Keep",
    ".hidden",
    ".env",
    "x.log",
    "X.LOG",
    "main.py",
    "node_modules",
    "lib",
    "a b",
    "data.json",
    "..x",
)
GLOBS = (
    "*.log",
    "**/*.log",
    "**/*.LOG",
    "**/keep",
    "**/Keep",
    "*/keep",
    "docs/**",
    "Docs/**",
    "?ocs",
    "[dD]ocs",
    "[^d]ocs",
    "[a-c]",
    ".*",
    "**/.*",
    "a*",
    "a**",
    "**x.log",
    "a/**/x.log",
    "**/a/**",
    "*",
    "**",
    "src/*",
    "*/*/*",
    "\\.env",
    "main.p?",
    "**/node_modules",
    "[[:upper:]]*",
    "**/[[:lower:]]ocs",
)
SPECIALS = (
    "Dockerfile",
    ".dockerignore",
    "!Dockerfile",
    "!.dockerignore",
    ".",
    "..",
    "../a",
    "/",
    "# docs",
    " #docs",
    "",
    "   ",
)


@dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, str]  # path -> content
    dirs: tuple[str, ...]  # empty directories
    links: dict[str, str]  # path -> target
    ignore_name: str  # ".dockerignore" or "Dockerfile.dockerignore"
    ignore_text: str
    decoy: str | None  # a .dockerignore the Dockerfile-specific file overrides


def _pick_path(rng: random.Random) -> str:
    depth = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
    return "/".join(rng.choice(NAMES) for _ in range(depth))


def _tree(rng: random.Random) -> tuple[dict[str, str], set[str], dict[str, str]]:
    files: dict[str, str] = {"Dockerfile": DOCKERFILE}
    dirs: set[str] = set()  # every directory, empty or not
    links: dict[str, str] = {}

    def free(path: str) -> bool:
        parts = path.split("/")
        parents = {"/".join(parts[:i]) for i in range(1, len(parts))}
        taken = files.keys() | links.keys()
        return (
            path not in taken
            and path not in dirs
            and not parents & taken
            and path != ".dockerignore"
            and path != "Dockerfile.dockerignore"
        )

    def add_parents(path: str) -> None:
        parts = path.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))

    for _ in range(rng.randint(10, 40)):
        path = _pick_path(rng)
        if free(path):
            files[path] = f"{path}\n"
            add_parents(path)
    for _ in range(rng.randint(0, 3)):
        path = _pick_path(rng)
        if free(path):
            add_parents(path)
            dirs.add(path)
    for _ in range(rng.randint(0, 3)):
        path = _pick_path(rng)
        if free(path):
            links[path] = rng.choice(("main.py", "../docs", "nowhere", "/etc/hostname"))
            add_parents(path)
    return files, dirs, links


def _flip_case(rng: random.Random, path: str) -> str:
    parts = path.split("/")
    i = rng.randrange(len(parts))
    parts[i] = parts[i].swapcase() if rng.random() < 0.5 else parts[i].capitalize()
    return "/".join(parts)


def _dress(rng: random.Random, pattern: str) -> str:
    """The same pattern as people write it: ``/``, ``./``, ``x/../``, trailing
    ``/``, whitespace around it."""
    roll = rng.random()
    if roll < 0.15:
        pattern = "/" + pattern
    elif roll < 0.25:
        pattern = "./" + pattern
    elif roll < 0.3:
        pattern = "zz/../" + pattern
    elif roll < 0.35:
        pattern = pattern + "/"
    elif roll < 0.4:
        pattern = pattern + "/."
    roll = rng.random()
    if roll < 0.2:
        pattern = pattern + rng.choice(("  ", " ", "\t", " \t "))
    elif roll < 0.3:
        pattern = rng.choice(("  ", "\t")) + pattern
    return pattern


def _patterns(
    rng: random.Random, files: dict[str, str], dirs: set[str], links: dict[str, str]
) -> list[str]:
    paths = sorted(files.keys() | dirs | links.keys())
    dir_list = sorted(dirs)
    lines: list[str] = []
    for _ in range(rng.randint(2, 9)):
        roll = rng.random()
        if roll < 0.3:
            path = rng.choice(paths)
            if rng.random() < 0.35:
                path = _flip_case(rng, path)
            lines.append(_dress(rng, path))
        elif roll < 0.55 and dir_list:
            # An ignored directory with something inside brought back.
            d = rng.choice(dir_list)
            lines.append(_dress(rng, d))
            inside = [p for p in paths if p.startswith(d + "/")]
            if inside:
                back = rng.choice(inside)
                if rng.random() < 0.3:
                    back = _flip_case(rng, back)
                if rng.random() < 0.3:
                    back = back + "/**"
                lines.append("!" + rng.choice(("", " ", "\t")) + _dress(rng, back))
            elif rng.random() < 0.5:
                lines.append("!" + rng.choice(("**/keep", "**/*.log", d + "/*", "**/.*")))
        elif roll < 0.85:
            glob = rng.choice(GLOBS)
            lines.append(("!" if rng.random() < 0.25 else "") + _dress(rng, glob))
        else:
            lines.append(rng.choice(SPECIALS))
    return lines


def make_case(n: int) -> Case:
    rng = random.Random(SEED + n)
    files, dirs, links = _tree(rng)
    lines = _patterns(rng, files, dirs, links)
    eol = "\r\n" if rng.random() < 0.15 else "\n"
    text = ("\ufeff" if rng.random() < 0.1 else "") + eol.join(lines)
    if rng.random() < 0.7:
        text += eol
    specific = rng.random() < 0.15
    empty = {d for d in dirs if not any(p.startswith(d + "/") for p in (*files, *links, *dirs))}
    return Case(
        id=f"case{n:02d}",
        files=files,
        dirs=tuple(sorted(empty)),
        links=links,
        ignore_name="Dockerfile.dockerignore" if specific else ".dockerignore",
        ignore_text=text,
        decoy="*\n" if specific and rng.random() < 0.7 else None,
    )


# Named cases first: issue 13's own, and the rules the generated ones may
# only brush against.
HAND_TREE = {
    "Dockerfile": DOCKERFILE,
    **{
        rel: f"{rel}\n"
        for rel in (
            "docs/guide.md",
            "Docs/old.md",
            "logs/today.log",
            "src/app.py",
            "src/deep/x.log",
            "node_modules/a/index.js",
            "node_modules/keep/me.js",
            ".env",
        )
    },
}
HAND = {
    "issue13-case": "Docs\n",
    "parent-re-include-not-inherited": "**/*.log\n!logs\n",
    "re-include-below-parent": "**/*.log\n!logs/**\n",
    "dir-under-double-star-kept": "node_modules/**\n",
    "glob-re-include-in-pruned-dir": "node_modules\n!**/keep\n",
    "allow-list": "*\n!src\n",
    "dockerfile-and-ignore-file": "Dockerfile\n.dockerignore\n",
    "dots": ".\n..\n../x\n/\n./.env\n",
    "comments-and-spaces": "# docs\n #docs\n  /docs/ \t\n!  docs/guide.md\n",
}
HAND_CASES = [
    Case(f"hand-{name}", HAND_TREE, (), {}, ".dockerignore", text, None)
    for name, text in HAND.items()
]
ALL_CASES = HAND_CASES + [make_case(n) for n in range(CASES)]


def lay_out(case: Case, root: Path) -> None:
    root.mkdir(parents=True)
    for rel, content in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    for rel in case.dirs:
        (root / rel).mkdir(parents=True, exist_ok=True)
    for rel, target in case.links.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    (root / case.ignore_name).write_bytes(case.ignore_text.encode())
    if case.decoy is not None:
        (root / ".dockerignore").write_text(case.decoy)


def listing(root: Path) -> set[str]:
    """Every path below ``root`` (files, directories, links; links not followed)."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in (*dirnames, *filenames):
            out.add(name if rel_dir == "." else f"{rel_dir}/{name}")
    return out


def build(buildctl: Path, addr: str, context: Path, dest: Path) -> str | None:
    """Build ``context`` with buildkitd; None when it worked, else the error."""
    argv = [
        str(buildctl),
        "--addr",
        addr,
        "build",
        "--frontend",
        "dockerfile.v0",
        "--local",
        f"context={context}",
        "--local",
        f"dockerfile={context}",
        "--opt",
        "filename=Dockerfile",
        "--output",
        f"type=local,dest={dest}",
        "--progress",
        "plain",
    ]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return None if done.returncode == 0 else done.stderr[-3000:]


@pytest.fixture(scope="module")
def built(
    buildkitd: str, buildkit_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, str | None]]]:
    """Every case laid out and built: (work directory, case id -> build error)."""
    work = tmp_path_factory.mktemp("dockerignore-buildkit")
    for case in ALL_CASES:
        lay_out(case, work / case.id / "context")
    with ThreadPoolExecutor(PARALLEL) as pool:
        errors = dict(
            zip(
                (c.id for c in ALL_CASES),
                pool.map(
                    lambda c: build(
                        buildkit_bin / "buildctl",
                        buildkitd,
                        work / c.id / "context",
                        work / c.id / "out",
                    ),
                    ALL_CASES,
                ),
                strict=True,
            )
        )
    yield work, errors
    shutil.rmtree(work, ignore_errors=True)


def _with_parents(paths: set[str]) -> set[str]:
    out = set(paths)
    for p in paths:
        while "/" in p:
            p = p.rpartition("/")[0]
            out.add(p)
    return out


def _watched(schedules: list[tuple[str, bool]], directory: str) -> bool:
    return any(
        directory == d or (recursive and (not d or directory.startswith(d + "/")))
        for d, recursive in schedules
    )


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_devreg_keeps_and_watches_what_buildkit_sends(
    built: tuple[Path, dict[str, str | None]], case: Case
) -> None:
    work, errors = built
    context = work / case.id / "context"
    ignore = (context / case.ignore_name).read_text(errors="replace")
    assert errors[case.id] is None, f"buildkitd failed on {case.ignore_name}:\n{ignore}"
    sent = listing(work / case.id / "out" / "ctx")

    index = ContextIndex(context, context / "Dockerfile")
    index.scan()
    kept = set(index.files())
    assert _with_parents(kept) == sent, (
        f"{case.ignore_name}:\n{ignore!r}\n"
        f"BuildKit only: {sorted(sent - _with_parents(kept))}\n"
        f"devreg only: {sorted(_with_parents(kept) - sent)}"
    )

    schedules = [
        (path[len(str(context)) + 1 :] if path != str(context) else "", rec)
        for path, rec in plan_schedules(index)
    ]
    for rel in sent:
        parent = rel.rpartition("/")[0]
        assert _watched(schedules, parent), f"{rel} is sent but {parent or '.'} is not watched"

    # The watcher's path: one edited file at a time.
    for rel in sorted(case.files):
        before = index.digest()
        path = context / rel
        path.write_text(path.read_text() + "edited\n")
        changed = index.update([str(path)])
        assert changed == (rel in sent), (
            f"{rel}: digest {'changed' if changed else 'unchanged'} after an edit, "
            f"BuildKit {'sends' if rel in sent else 'does not send'} it\n{ignore!r}"
        )
        assert (index.digest() != before) == changed
