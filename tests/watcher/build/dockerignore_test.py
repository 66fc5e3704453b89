from __future__ import annotations

import os
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from watcher.build.dockerignore import ContextFilter, ignore_file, read_patterns


def _kept(flt: ContextFilter, top: str = "") -> set[str]:
    return {rel for listing in flt.walk(top) for rel, _ in listing.kept}


TREE = (
    "Dockerfile",
    "main.py",
    "README.md",
    "docs/guide.md",
    "src/app.py",
    "src/app.pyc",
    "src/deep/x.log",
    "node_modules/a/index.js",
    "node_modules/keep/me.js",
    "build/out.bin",
    ".git/HEAD",
)


def _make(root: Path, files: tuple[str, ...] = TREE) -> None:
    for rel in files:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)


@pytest.mark.parametrize(
    "patterns",
    [
        pytest.param([], id="no-ignore-file"),
        pytest.param(["node_modules", ".git"], id="plain-dirs"),
        pytest.param(["**/*.pyc", "**/*.log"], id="double-star"),
        pytest.param(["*.md", "!README.md"], id="exception"),
        pytest.param(["node_modules", "!node_modules/keep"], id="exception-inside-ignored-dir"),
        pytest.param(["*", "!src"], id="allow-list"),
        pytest.param(["# comment", "", "  build/  ", "/docs"], id="comments-slashes-spaces"),
        pytest.param(["Dockerfile"], id="dockerfile-always-kept"),
    ],
)
def test_walk_keeps_what_the_docker_sdk_keeps(tmp_path: Path, patterns: list[str]) -> None:
    _make(tmp_path)
    if patterns:
        (tmp_path / ".dockerignore").write_text("\n".join(patterns) + "\n")
    flt = ContextFilter(tmp_path, tmp_path / "Dockerfile")
    ours = _kept(flt)
    theirs = set(
        exclude_paths(
            str(tmp_path), read_patterns(tmp_path / ".dockerignore"), dockerfile="Dockerfile"
        )
    )
    assert ours == theirs


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    _make(tmp_path)
    (tmp_path / ".dockerignore").write_text("src\n")
    (tmp_path / "Dockerfile.dockerignore").write_text("docs\n")
    assert ignore_file(tmp_path, tmp_path / "Dockerfile") == tmp_path / "Dockerfile.dockerignore"
    kept = _kept(ContextFilter(tmp_path, tmp_path / "Dockerfile"))
    assert "src/app.py" in kept
    assert "docs/guide.md" not in kept


@pytest.mark.parametrize(
    ("patterns", "passed", "pruned"),
    [
        pytest.param([], set(), set(), id="no-ignore-file"),
        pytest.param(["node_modules"], set(), {"node_modules"}, id="ignored-dir-pruned"),
        pytest.param(
            ["node_modules", "!node_modules/keep"],
            {"node_modules"},
            {"node_modules/a"},
            id="exception-reaches-into-dir",
        ),
        pytest.param(["*.log"], set(), set(), id="file-pattern-keeps-dir"),
        pytest.param(
            ["*", "!src"], set(), {"node_modules", "build", "docs", ".git"}, id="allow-list"
        ),
    ],
)
def test_walk_enters_no_wholly_ignored_directory(
    tmp_path: Path, patterns: list[str], passed: set[str], pruned: set[str]
) -> None:
    _make(tmp_path)
    (tmp_path / ".dockerignore").write_text("\n".join(patterns))
    flt = ContextFilter(tmp_path, tmp_path / "Dockerfile")
    listings = list(flt.walk())
    assert {d for listing in listings for d in listing.passed} == passed
    assert {d for listing in listings for d in listing.pruned} == pruned
    # Nothing below a pruned directory is even listed.
    seen = {rel for listing in listings for rel, _ in listing.kept}
    seen |= {d for listing in listings for d in (*listing.passed, *listing.pruned)}
    assert not any(rel.startswith(f"{d}/") for d in pruned for rel in seen)


@pytest.mark.parametrize(
    ("top", "kept", "passed", "pruned"),
    [
        pytest.param("src/app.py", {"src/app.py"}, [], [], id="kept-file"),
        pytest.param("src", {"src", "src/app.py", "src/deep", "src/deep/x.log"}, [], [], id="dir"),
        pytest.param("src/app.pyc", set(), [], [], id="ignored-file"),
        pytest.param("build", set(), [], ["build"], id="pruned-dir"),
        pytest.param(
            "node_modules",
            {"node_modules/keep", "node_modules/keep/me.js"},
            ["node_modules"],
            [],
            id="passed-dir",
        ),
        pytest.param("gone", set(), [], [], id="missing"),
    ],
)
def test_walk_from_a_path_decides_the_path_itself_first(
    tmp_path: Path, top: str, kept: set[str], passed: list[str], pruned: list[str]
) -> None:
    _make(tmp_path)
    (tmp_path / ".dockerignore").write_text("**/*.pyc\nbuild\nnode_modules\n!node_modules/keep\n")
    listings = list(ContextFilter(tmp_path, tmp_path / "Dockerfile").walk(top))
    assert {rel for listing in listings for rel, _ in listing.kept} == kept
    if listings:
        first = listings[0]
        assert [rel for rel, _ in first.kept] + first.passed + first.pruned in ([], [top])
        assert first.passed == passed and first.pruned == pruned


def test_walk_gives_each_entry_its_lstat(tmp_path: Path) -> None:
    _make(tmp_path)
    (tmp_path / "link").symlink_to("main.py")
    found = {
        rel: st
        for listing in ContextFilter(tmp_path, tmp_path / "Dockerfile").walk()
        for rel, st in listing.kept
    }
    assert found["link"].st_ino == os.lstat(tmp_path / "link").st_ino
    assert found["src"].st_ino == os.lstat(tmp_path / "src").st_ino
    assert found["main.py"].st_size == len("main.py")
