"""``.dockerignore`` rules, case by case. Each expectation here is BuildKit's
(moby/patternmatcher and tonistiigi/fsutil, as buildkitd v0.34 applies them);
dockerignore_buildkit_test.py checks the same code against a real buildkitd
on generated cases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from watcher.build.dockerignore import (
    ContextFilter,
    clean_path,
    compile_pattern,
    compile_patterns,
    ignore_file,
    parse_patterns,
    read_patterns,
)


def _kept(flt: ContextFilter, top: str = "") -> set[str]:
    return {rel for listing in flt.walk(top) for rel, _ in listing.kept}


TREE = (
    "Dockerfile",
    "main.py",
    "README.md",
    "docs/guide.md",
    "Docs/old.md",
    "src/app.py",
    "src/app.pyc",
    "src/deep/x.log",
    "logs/today.log",
    "node_modules/a/index.js",
    "node_modules/keep/me.js",
    "build/out.bin",
    ".git/HEAD",
    ".env",
)


def _make(root: Path, files: tuple[str, ...] = TREE) -> None:
    for rel in files:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)


def _files(kept: set[str]) -> set[str]:
    return {rel for rel in kept if rel in TREE or rel == ".dockerignore"}


ALL = set(TREE) | {".dockerignore"}


@pytest.mark.parametrize(
    ("text", "patterns"),
    [
        pytest.param("Docs\n", ["Docs"], id="plain"),
        pytest.param("# c\n #d\n\n  a  \n\t\n", ["#d", "a"], id="comment-only-at-line-start"),
        pytest.param(
            "/a\n//b\n./c\nd/../e\nf/\n/\n..\n../g\n.\n",
            ["a", "b", "c", "e", "f", "/", "..", "../g", "."],
            id="cleaned-and-leading-slash",
        ),
        pytest.param("!a\n! /b \n!\t./c/\n", ["!a", "!b", "!c"], id="re-includes-trimmed"),
        pytest.param("\ufeffa\r\nb\r\n", ["a", "b"], id="bom-and-crlf"),
        pytest.param("\ufeff# c\nx", ["x"], id="bom-then-comment"),
        pytest.param("x\n\ufeffy\n", ["x", "\ufeffy"], id="bom-only-on-the-first-line"),
        pytest.param("a \u3000\n", ["a"], id="go-whitespace-trimmed"),
        pytest.param("a\x1c\n", ["a\x1c"], id="not-go-whitespace-kept"),
        pytest.param("a\vb\n", ["a\vb"], id="only-newline-ends-a-line"),
        pytest.param("!\n", ["!"], id="lone-bang"),
    ],
)
def test_parse_patterns_reads_like_ignorefile_readall(text: str, patterns: list[str]) -> None:
    assert parse_patterns(text) == patterns


def test_read_patterns_missing_file_and_raw_bytes(tmp_path: Path) -> None:
    assert read_patterns(tmp_path / "nope") == []
    (tmp_path / ".dockerignore").write_bytes(b"caf\xe9\n")
    [pattern] = read_patterns(tmp_path / ".dockerignore")
    # The same bytes as os.scandir gives a file of that name.
    assert pattern == os.fsdecode(b"caf\xe9")


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("", "."),
        ("a//b", "a/b"),
        ("a/./b/", "a/b"),
        ("a/..", "."),
        ("a/../..", ".."),
        ("../../a", "../../a"),
        ("/../a", "/a"),
        ("//a", "/a"),
        ("/", "/"),
        ("!a/../b", "b"),
    ],
)
def test_clean_path_is_gos_filepath_clean(path: str, clean: str) -> None:
    assert clean_path(path) == clean


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        pytest.param("Docs", ["Docs"], ["docs", "DOCS", "Docs/x"], id="case-sensitive-exact"),
        pytest.param("*.log", ["x.log", ".log"], ["a/x.log", "x.LOG"], id="star-stays-in-dir"),
        pytest.param("**/*.log", ["x.log", "a/b/x.log"], ["x.log.1"], id="double-star-any-depth"),
        pytest.param("**/keep", ["keep", "a/keep"], ["akeep", "keep/a"], id="suffix"),
        pytest.param("**keep", ["keep", "akeep", "a/bkeep"], ["keep/a"], id="bare-suffix"),
        pytest.param("a/**", ["a/b", "a/b/c"], ["a", "ab"], id="prefix-not-the-dir-itself"),
        pytest.param("a**", ["a", "ab", "a/b"], ["ba"], id="prefix-no-slash"),
        pytest.param("**", ["a", "a/b"], [], id="everything"),
        pytest.param("a/**/b", ["a/b", "a/x/y/b"], ["a/xb"], id="middle-double-star"),
        pytest.param("a**b", ["ab", "ax/b"], ["axb"], id="double-star-not-before-slash"),
        pytest.param("?ocs", ["docs", "Docs"], ["ocs", "a/docs"], id="question-mark"),
        pytest.param("[dD]ocs", ["docs", "Docs"], ["DOCS"], id="class"),
        pytest.param("[^d]ocs", ["Docs", "/ocs"], ["docs", "a/docs"], id="negated-class"),
        pytest.param("[[:upper:]]x", ["Ax"], ["ax"], id="posix-class"),
        pytest.param("\\*.md", ["*.md"], ["a.md"], id="escaped-star"),
        pytest.param("a.b+(c)", ["a.b+(c)"], ["axb+(c)"], id="regexp-chars-are-literal"),
        pytest.param("?x", ["ax"], ["ax\n"], id="no-match-before-final-newline"),
    ],
)
def test_compile_pattern_matches_like_patternmatcher(
    pattern: str, matching: list[str], not_matching: list[str]
) -> None:
    matches = compile_pattern(pattern)
    assert [p for p in matching if not matches(p)] == []
    assert [p for p in not_matching if matches(p)] == []


@pytest.mark.parametrize(
    "patterns",
    [
        pytest.param(["!"], id="lone-bang"),
        pytest.param(["[a"], id="open-class"),
        pytest.param(["[]"], id="empty-class"),
        pytest.param(["a\\"], id="trailing-backslash"),
        pytest.param(["[z-]"], id="open-range"),
    ],
)
def test_patterns_buildkit_refuses_match_nothing(patterns: list[str]) -> None:
    assert compile_patterns(patterns) == ()


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        pytest.param([], ALL, id="no-patterns"),
        pytest.param(
            ["Docs"],
            ALL - {"Docs/old.md"},
            id="case-sensitive",  # issue 13: docs/ is sent, so it counts
        ),
        pytest.param(
            ["Dockerfile", ".dockerignore"],
            ALL - {"Dockerfile", ".dockerignore"},
            id="dockerfile-and-ignore-file-can-be-ignored",
        ),
        pytest.param(
            ["**/*.pyc", "**/*.log"],
            ALL - {"src/app.pyc", "src/deep/x.log", "logs/today.log"},
            id="double-star",
        ),
        pytest.param(["*.md", "!README.md"], ALL, id="star-stays-at-the-top"),
        pytest.param(
            ["**/*.md", "!README.md"], ALL - {"docs/guide.md", "Docs/old.md"}, id="exception"
        ),
        pytest.param(
            ["node_modules", "!node_modules/keep"],
            ALL - {"node_modules/a/index.js"},
            id="exception-inside-ignored-dir",
        ),
        pytest.param(
            ["node_modules", "!**/keep"],
            ALL - {"node_modules/a/index.js"},
            id="glob-exception-inside-ignored-dir",
        ),
        pytest.param(
            ["*", "!src"], {"src/app.py", "src/app.pyc", "src/deep/x.log"}, id="allow-list"
        ),
        pytest.param(
            ["# comment", "", "  build/  ", "/docs", "./.git/", "src/../.env"],
            ALL - {"build/out.bin", "docs/guide.md", ".git/HEAD", ".env"},
            id="comments-slashes-spaces-dots",
        ),
        pytest.param(
            ["**/*.log", "!logs"],
            ALL - {"src/deep/x.log", "logs/today.log"},
            # fsutil: ``!logs`` was not tried at ``logs`` (nothing ignored it
            # there), so it is not inherited by logs/today.log.
            id="re-include-of-a-parent-not-inherited",
        ),
        pytest.param(
            ["**/*.log", "!logs/**"],
            ALL - {"src/deep/x.log"},
            id="re-include-below-a-parent",
        ),
        pytest.param([".", "..", "../x", "/"], ALL, id="dots-match-nothing"),
    ],
)
def test_walk_keeps_what_buildkit_sends(
    tmp_path: Path, patterns: list[str], expected: set[str]
) -> None:
    _make(tmp_path)
    (tmp_path / ".dockerignore").write_text("\n".join(patterns) + "\n")
    assert _files(_kept(ContextFilter(tmp_path, tmp_path / "Dockerfile"))) == expected


def test_directory_under_double_star_is_itself_kept(tmp_path: Path) -> None:
    _make(tmp_path)
    (tmp_path / ".dockerignore").write_text("node_modules/**\n")
    kept = _kept(ContextFilter(tmp_path, tmp_path / "Dockerfile"))
    assert "node_modules" in kept  # BuildKit sends it, empty
    assert not any(rel.startswith("node_modules/") for rel in kept)


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    _make(tmp_path)
    (tmp_path / ".dockerignore").write_text("src\n")
    (tmp_path / "Dockerfile.dockerignore").write_text("docs\n")
    assert ignore_file(tmp_path, tmp_path / "Dockerfile") == tmp_path / "Dockerfile.dockerignore"
    kept = _kept(ContextFilter(tmp_path, tmp_path / "Dockerfile"))
    assert "src/app.py" in kept
    assert "docs/guide.md" not in kept


def test_empty_dockerfile_specific_ignore_file_still_wins(tmp_path: Path) -> None:
    _make(tmp_path)
    (tmp_path / ".dockerignore").write_text("*\n")
    (tmp_path / "Dockerfile.dockerignore").write_text("")
    assert _files(_kept(ContextFilter(tmp_path, tmp_path / "Dockerfile"))) == ALL


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
        pytest.param(
            ["node_modules", "!node_modules/keep/**"],
            {"node_modules", "node_modules/keep"},
            {"node_modules/a"},
            id="exception-with-trailing-glob-reaches-into-dir",
        ),
        pytest.param(
            ["node_modules", "!node_modulesX"],
            set(),
            {"node_modules"},
            id="exception-beside-dir-does-not-reach",
        ),
        pytest.param(
            ["node_modules", "!**/keep"],
            {"node_modules", "node_modules/a"},
            set(),
            id="glob-exception-enters-every-ignored-dir",
        ),
        pytest.param(["*.log"], set(), set(), id="file-pattern-keeps-dir"),
        pytest.param(
            ["*", "!src"],
            set(),
            {"node_modules", "build", "docs", "Docs", "logs", ".git"},
            id="allow-list",
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
        pytest.param("src", {"src", "src/app.py", "src/deep"}, [], [], id="dir"),
        pytest.param("src/app.pyc", set(), [], [], id="ignored-file"),
        pytest.param("build", set(), [], ["build"], id="pruned-dir"),
        pytest.param("build/out.bin", None, [], [], id="below-a-pruned-dir"),
        pytest.param(
            "node_modules",
            {"node_modules/keep", "node_modules/keep/me.js"},
            ["node_modules"],
            [],
            id="passed-dir",
        ),
        pytest.param(
            "node_modules/keep/me.js", {"node_modules/keep/me.js"}, [], [], id="below-a-passed-dir"
        ),
        pytest.param("logs/today.log", set(), [], [], id="parent-not-inherited"),
        pytest.param("gone", set(), [], [], id="missing"),
    ],
)
def test_walk_from_a_path_decides_the_path_itself_first(
    tmp_path: Path, top: str, kept: set[str] | None, passed: list[str], pruned: list[str]
) -> None:
    _make(tmp_path)
    (tmp_path / ".dockerignore").write_text(
        "**/*.pyc\nbuild\nnode_modules\n!node_modules/keep\n**/*.log\n!logs\n"
    )
    flt = ContextFilter(tmp_path, tmp_path / "Dockerfile")
    listings = list(flt.walk(top))
    if kept is None:  # the build never looks there: not even decided
        assert listings == []
        return
    assert {rel for listing in listings for rel, _ in listing.kept} == kept
    # The same decisions as the walk of the whole context.
    whole = _kept(flt)
    assert kept == {rel for rel in whole if rel == top or rel.startswith(f"{top}/")}
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
