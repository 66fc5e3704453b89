from __future__ import annotations

from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from watcher.build.dockerignore import ContextFilter, ignore_file, read_patterns

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
    ours = {rel for rel, _ in flt.walk()}
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
    kept = {rel for rel, _ in ContextFilter(tmp_path, tmp_path / "Dockerfile").walk()}
    assert "src/app.py" in kept
    assert "docs/guide.md" not in kept


@pytest.mark.parametrize(
    ("patterns", "pruned", "watched"),
    [
        pytest.param(["node_modules"], "node_modules", True, id="ignored-dir-pruned"),
        pytest.param(
            ["node_modules", "!node_modules/keep"], "node_modules", False, id="exception-keeps-dir"
        ),
        pytest.param(["*.log"], "src", False, id="file-pattern-keeps-dir"),
    ],
)
def test_wholly_ignored_directories(
    tmp_path: Path, patterns: list[str], pruned: str, watched: bool
) -> None:
    _make(tmp_path)
    (tmp_path / ".dockerignore").write_text("\n".join(patterns))
    flt = ContextFilter(tmp_path, tmp_path / "Dockerfile")
    assert flt.pruned(pruned) is watched
    dirs = set(flt.watched_dirs())
    assert (tmp_path / pruned in dirs) is not watched
    assert tmp_path / ".git" not in dirs
