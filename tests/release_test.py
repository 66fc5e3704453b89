"""A release as a user meets it: the version written once and named alike by the
README's `.pre-commit-config.yaml` snippet, the CHANGELOG and the git tag; the
sdist and the wheel (``python -m build``); and the real pre-commit installing the
hook by tag from a clean ``file://`` clone, with ``try-repo`` and a ``rev:`` pin."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from hookpkg import __version__

REPO = Path(__file__).resolve().parents[1]
HOOK_ID = "devspace-registry"
GOOD = "version: v2beta1\nname: x\nimages:\n  app:\n    image: ghcr.io/org/app\n"


def readme_rev() -> str:
    """The ``rev:`` of the README's `.pre-commit-config.yaml` snippet."""
    snippet = re.search(
        r"```yaml\nrepos:\n- repo: (?P<repo>\S+).*?\n  rev: (?P<rev>\S+)\n  hooks:\n  - id: (?P<id>\S+)",
        (REPO / "README.md").read_text(),
        re.S,
    )
    assert snippet is not None, "README.md has no .pre-commit-config.yaml snippet"
    assert snippet["id"] == HOOK_ID
    return snippet["rev"]


def test_the_readme_pins_this_version() -> None:
    assert readme_rev() == f"v{__version__}"


def test_the_changelog_has_this_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d\d-\d\d$", changelog, re.M)
    assert f"[{__version__}]: " in changelog


def test_the_license_is_the_one_pyproject_names() -> None:
    assert 'license = "MIT"' in (REPO / "pyproject.toml").read_text()
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=check,
    )


@pytest.fixture(scope="module")
def clean_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository as a user clones it: committed files and tags only."""
    clone = tmp_path_factory.mktemp("clone") / "devreg"
    git(clone.parent, "clone", "-q", REPO.as_uri(), clone.name)
    return clone


def test_the_tag_carries_its_version(clean_clone: Path) -> None:
    """``v0.1.0`` is annotated and names the commit whose version is 0.1.0."""
    rev = readme_rev()
    if git(clean_clone, "rev-parse", "-q", "--verify", f"refs/tags/{rev}", check=False).returncode:
        pytest.skip(f"no tag {rev} in this clone (a shallow or tagless checkout)")
    assert git(clean_clone, "cat-file", "-t", rev).stdout.strip() == "tag"  # annotated
    at_tag = git(clean_clone, "show", f"{rev}:hookpkg/__init__.py").stdout
    assert f'__version__ = "{rev.removeprefix("v")}"' in at_tag


def pre_commit() -> list[str]:
    exe = shutil.which("pre-commit")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pre-commit is not installed (pip install -e '.[test]')")
        pytest.skip("pre-commit is not installed")
    return [exe]


@pytest.mark.slow
def test_pre_commit_installs_the_tag_from_a_clean_clone(clean_clone: Path, tmp_path: Path) -> None:
    """What the README tells a user to write, against a ``file://`` clone: a
    ``rev:`` pin and ``pre-commit try-repo``, both by the README's tag."""
    rev = readme_rev()
    if git(clean_clone, "rev-parse", "-q", "--verify", f"refs/tags/{rev}", check=False).returncode:
        pytest.skip(f"no tag {rev} in this clone (a shallow or tagless checkout)")
    url = clean_clone.as_uri()
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q", "-b", "main")
    (project / "devspace.yaml").write_text(GOOD)
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {url}\n  rev: {rev}\n  hooks:\n  - id: {HOOK_ID}\n"
    )
    git(project, "add", "-A")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "home"), "PRE_COMMIT_COLOR": "never"}
    for argv in (
        ["run", "--all-files"],
        ["try-repo", url, HOOK_ID, "--ref", rev, "--all-files"],
    ):
        done = subprocess.run(
            [*pre_commit(), *argv], cwd=project, capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "image app: local-registry-if-refused" in done.stdout


@pytest.mark.slow
def test_the_sdist_and_the_wheel(clean_clone: Path, tmp_path: Path) -> None:
    """``python -m build`` from a clean clone: the sdist carries LICENSE, the
    CHANGELOG, docs/ and tests/; the wheel the two packages and their data; the
    metadata needs PyYAML alone, the runtime is an extra."""
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "-o", str(tmp_path), "."],
        cwd=clean_clone,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 and "No module named build" in done.stderr:
        pytest.skip("the build package is not installed (pip install -e '.[dev]')")
    assert done.returncode == 0, done.stdout + done.stderr
    prefix = f"devreg-{__version__}/"
    with tarfile.open(tmp_path / f"devreg-{__version__}.tar.gz") as sdist:
        names = {n.removeprefix(prefix) for n in sdist.getnames()}
    for expected in (
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "pyproject.toml",
        ".pre-commit-hooks.yaml",
        "docs/architecture.md",
        "tests/conftest.py",
        "tests/fixtures/devspace/README.md",
        "tests/hook_examples/positive/devspace.yaml",
        "examples/hello/devspace.yaml",
        "scripts/testenv",
        "hookpkg/schemas/local-registry.schema.json",
    ):
        assert expected in names, expected
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    with zipfile.ZipFile(tmp_path / f"devreg-{__version__}-py3-none-any.whl") as wheel:
        files = wheel.namelist()
        info = f"devreg-{__version__}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert {f.split("/")[0] for f in files} == {"hookpkg", "watcher", info}
    assert "hookpkg/schemas/local-registry.schema.json" in files
    assert f"{info}/licenses/LICENSE" in files
    requires = [
        line.removeprefix("Requires-Dist: ")
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ")
    ]
    assert [r for r in requires if "extra ==" not in r] == ["pyyaml<7,>=6.0"]
    runtime = sorted(r.split("<")[0].split(">")[0] for r in requires if "extra == 'runtime'" in r)
    assert runtime == ["docker", "kubernetes", "requests", "watchdog"]
    assert f"Version: {__version__}\n" in metadata
    assert "License-Expression: MIT\n" in metadata
