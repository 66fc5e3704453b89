"""The hook's own manifest, run by the real pre-commit in temporary git repositories."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = Path(__file__).parent / "hook_examples"
HOOK_ID = "devspace-registry"


def manifest() -> dict[str, object]:
    (hook,) = [
        h
        for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
        if h["id"] == HOOK_ID
    ]
    return hook  # type: ignore[no-any-return]


MATCH = [
    "devspace.yaml",
    "devspace.yml",
    "devspace-prod.yaml",
    "deploy/devspace.yaml",
    "a/b/devspace-dev.yml",
    "devspace-x.y.yaml",
]
NO_MATCH = [
    "devspace.yaml.bak",
    "mydevspace.yaml",
    "devspace.json",
    "devspace-.yaml",
    "devspace/values.yaml",
    "devspace_prod.yaml",
    "docs/devspace.md",
    "devspace-a/b.yaml",
]


@pytest.mark.parametrize("name", MATCH)
def test_files_pattern_matches(name: str) -> None:
    assert re.search(str(manifest()["files"]), name)


@pytest.mark.parametrize("name", NO_MATCH)
def test_files_pattern_does_not_match(name: str) -> None:
    assert not re.search(str(manifest()["files"]), name)


def test_manifest_fields() -> None:
    hook = manifest()
    assert hook["language"] == "python"
    assert hook["verbose"] is True  # so the preview shows on success
    assert hook["entry"] == "devreg check"


# --- the real pre-commit ----------------------------------------------------------


def pre_commit() -> list[str]:
    exe = shutil.which("pre-commit")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pre-commit is not installed (pip install -e '.[test]')")
        pytest.skip("pre-commit is not installed")
    return [exe]


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hook environment for the session: pre-commit installs devreg once per revision."""
    return tmp_path_factory.mktemp("pre-commit-home")


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    git(tmp_path, "init", "-q", "-b", "main")
    yield tmp_path


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "PRE_COMMIT_HOME": str(home), "PRE_COMMIT_COLOR": "never", "SKIP": ""}


def source_revision(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """This checkout as a repository pre-commit can clone: HEAD when clean,
    else a snapshot commit of the working tree in a scratch clone."""
    status = git(
        REPO,
        "status",
        "--porcelain",
        "--",
        "hookpkg",
        "watcher",
        "pyproject.toml",
        ".pre-commit-hooks.yaml",
    ).stdout
    head = git(REPO, "rev-parse", "HEAD").stdout.strip()
    if not status:
        return REPO, head
    clone = tmp_path_factory.mktemp("snapshot")
    git(clone.parent, "clone", "-q", str(REPO), clone.name)
    for part in ("hookpkg", "watcher", "pyproject.toml", ".pre-commit-hooks.yaml", "README.md"):
        src, dst = REPO / part, clone / part
        if src.is_dir():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dst)
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "snapshot")
    return clone, git(clone, "rev-parse", "HEAD").stdout.strip()


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return source_revision(tmp_path_factory)


@pytest.mark.slow
def test_try_repo_positive_and_negative(
    project: Path, pre_commit_home: Path, hook_repo: tuple[Path, str]
) -> None:
    repo, rev = hook_repo
    for d in ("positive", "negative"):
        shutil.copytree(EXAMPLES / d, project / d)
    git(project, "add", "-A")
    cmd = [*pre_commit(), "try-repo", str(repo), HOOK_ID, "--ref", rev]
    ok = subprocess.run(
        [
            *cmd,
            "--files",
            *sorted(str(p.relative_to(project)) for p in (project / "positive").iterdir()),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env=env(pre_commit_home),
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "image api: local-registry" in ok.stdout  # verbose: the preview shows on success
    assert (
        "positive/devspace.yaml:12:12: images.api.image: ghcr.io/acme/shop-api -> localhost:[NODE_PORT]/acme/shop-api"
        in ok.stdout
    )

    bad = subprocess.run(
        [
            *cmd,
            "--files",
            "negative/devspace.yaml",
            "negative/devspace-misplaced.yaml",
            "positive/devspace.yaml",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env=env(pre_commit_home),
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    out = bad.stdout
    assert (
        "negative/devspace.yaml:5:3: error: localRegistry.locaBuild: unknown key 'locaBuild'; did you mean 'localbuild'?"
        in out
    )
    assert "negative/devspace.yaml:6:9: error: localRegistry.port: 70000 is out of range" in out
    assert "negative/devspace.yaml:9:12: error: images.api.image:" in out and "lowercase" in out
    assert (
        "negative/devspace-misplaced.yaml:6:5: error: images.app.localRegistry: localRegistry belongs at the top level"
        in out
    )
    assert "image api: local-registry" in out  # the good file in the same run was still checked
    assert "Traceback" not in out + bad.stderr


@pytest.mark.slow
def test_commit_blocked_then_fixed(
    project: Path, pre_commit_home: Path, hook_repo: tuple[Path, str]
) -> None:
    """A new user's loop: install the hook, commit a bad config, read, fix, commit."""
    repo, rev = hook_repo
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {repo}\n  rev: {rev}\n  hooks:\n  - id: {HOOK_ID}\n"
    )
    (project / "README").write_text("not a config\n")
    (project / "devspace.yaml").write_text((EXAMPLES / "negative" / "devspace.yaml").read_text())
    installed = subprocess.run(
        [*pre_commit(), "install"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env(pre_commit_home),
    )
    assert installed.returncode == 0, installed.stderr
    git(project, "add", "-A")
    blocked = git_commit(project, pre_commit_home)
    assert blocked.returncode != 0
    assert (
        "devspace.yaml:6:9: error: localRegistry.port: 70000 is out of range"
        in blocked.stdout + blocked.stderr
    )
    assert git(project, "rev-parse", "--verify", "HEAD").returncode != 0  # nothing was committed

    fixed = (
        (project / "devspace.yaml")
        .read_text()
        .replace("locaBuild", "localbuild")
        .replace("70000", "5000")
    )
    (project / "devspace.yaml").write_text(fixed.replace("ghcr.io/Acme", "ghcr.io/acme"))
    git(project, "add", "-A")
    done = git_commit(project, pre_commit_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "image api: local-registry" in done.stdout + done.stderr

    # `pre-commit run devspace-registry` on a file the pattern ignores does nothing.
    (project / "README").write_text("changed\n")
    skipped = subprocess.run(
        [*pre_commit(), "run", HOOK_ID, "--files", "README"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env(pre_commit_home),
    )
    assert skipped.returncode == 0 and "no files to check" in skipped.stdout.lower()


def git_commit(project: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-m", "config"],
        cwd=project,
        capture_output=True,
        text=True,
        env={
            **env(home),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        },
    )


@pytest.mark.slow
def test_the_hook_environment_is_slim(
    project: Path, pre_commit_home: Path, hook_repo: tuple[Path, str]
) -> None:
    """pre-commit installs the hook with no extra: devreg and PyYAML, none of the
    runtime; a runtime command there says which pip line it needs, without a
    traceback."""
    repo, rev = hook_repo
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {repo.as_uri()}\n  rev: {rev}\n  hooks:\n  - id: {HOOK_ID}\n"
    )
    (project / "devspace.yaml").write_text("images:\n  app:\n    image: ghcr.io/org/app\n")
    git(project, "add", "-A")
    ran = subprocess.run(
        [*pre_commit(), "run", "--all-files"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env(pre_commit_home),
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    found = sorted(pre_commit_home.glob("repo*/py_env-*/bin/devreg"))
    assert found, "pre-commit made no hook environment"
    devreg = found[0]
    python = devreg.parent / "python"
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"devreg", "pyyaml"} <= names
    assert not names & {"docker", "kubernetes", "watchdog", "requests"}, names
    done = subprocess.run(
        [str(devreg), "build"], cwd=project, capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert "pip install 'devreg[runtime]'" in done.stderr and "Traceback" not in done.stderr
