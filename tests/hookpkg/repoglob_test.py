"""kubectl manifest globs: glob's matching, confined to the repository."""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookpkg.repoglob import confined_glob, inside, repository_root

NAMES = ["a", "b", "k8s", "x.yaml", "y.yml", ".hidden", ".h.yaml", "deep"]


@st.composite
def trees(draw: st.DrawFn) -> list[tuple[str, ...]]:
    """Relative file paths (directories are implied)."""
    return draw(
        st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map(tuple), max_size=12)
    )


patterns = st.lists(
    st.sampled_from(
        ["*", "**", "*.yaml", "*.y*ml", "?", "k8s", "a", "[ab]", "[!a]*", ".*", "x.yaml", "deep"]
    ),
    min_size=1,
    max_size=4,
).map("/".join)


def build(root: Path, files: list[tuple[str, ...]]) -> None:
    for parts in files:
        path = root.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_text("a: 1\n")
        except (FileExistsError, NotADirectoryError):
            continue  # a name used as both a file and a directory


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=trees(), pattern=patterns)
def test_matches_what_glob_matches_inside_the_repository(
    tmp_path_factory: pytest.TempPathFactory, files: list[tuple[str, ...]], pattern: str
) -> None:
    root = tmp_path_factory.mktemp("repo")
    build(root, files)
    # glob repeats a path that '**/**' reaches twice; the set is what it matches. It
    # also answers 'a/**' with 'a/' when a is a file or does not exist at all (paths
    # nothing has: hypothesis drew files=[a] with '**/a/**', and files=[] with
    # 'k8s/**'); those are not matches.
    found = glob.glob(str(root / pattern), recursive=True)
    expected = sorted(
        {
            Path(os.path.normpath(p))
            for p in found
            if not (p.endswith(os.sep) and not os.path.isdir(p))
        }
    )
    got = confined_glob(pattern, root, root)
    assert got.problem is None
    assert [Path(os.path.normpath(p)) for p in got.paths] == expected


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("/**", "an absolute path is outside the repository"),
        ("/etc/*.yaml", "an absolute path is outside the repository"),
        ("../../../../**/*.yaml", "it reaches outside the repository"),
        ("sub/../../x/*.yaml", "it reaches outside the repository"),
        ("*/../../*.yaml", "'..' after a wildcard is not supported"),
        ("out/**/*.yaml", "it reaches outside the repository"),
    ],
)
def test_patterns_that_leave_the_repository(tmp_path: Path, pattern: str, problem: str) -> None:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "out").symlink_to(tmp_path)
    start = time.perf_counter()
    got = confined_glob(pattern, repo, repo)
    assert time.perf_counter() - start < 1
    assert got.paths == []
    assert got.problem is not None and got.problem.startswith(problem)


def test_symlinks_are_not_followed_out_or_round(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "k8s").mkdir(parents=True)
    (repo / "k8s" / "app.yaml").write_text("a: 1\n")
    (repo / "k8s" / "loop").symlink_to(repo / "k8s")  # a loop
    (repo / "k8s" / "root").symlink_to("/")  # the whole filesystem
    (tmp_path / "secret.yaml").write_text("s: 1\n")
    (repo / "k8s" / "secret.yaml").symlink_to(tmp_path / "secret.yaml")
    got = confined_glob("**/*.yaml", repo, repo)
    assert got == ([repo / "k8s" / "app.yaml"], None)
    assert confined_glob("k8s/*/app.yaml", repo, repo).paths == [repo / "k8s" / "loop" / "app.yaml"]
    assert confined_glob("k8s/root/etc/*", repo, repo).problem is not None


def test_the_walk_is_bounded(tmp_path: Path) -> None:
    for i in range(50):
        (tmp_path / f"d{i}").mkdir()
        for j in range(10):
            (tmp_path / f"d{i}" / f"f{j}.yaml").write_text("")
    got = confined_glob("**/*.yaml", tmp_path, tmp_path, max_entries=100)
    assert got.problem == "stopped after 100 directory entries"
    assert len(got.paths) < 100


def test_repository_root_and_inside(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert repository_root(tmp_path / "a" / "b") == tmp_path
    assert inside(tmp_path / "a", tmp_path)
    assert inside(tmp_path, tmp_path)
    assert not inside(tmp_path.parent, tmp_path)
    assert not inside(str(tmp_path) + "x", tmp_path)
