"""hookpkg/project.py: one loader, one decision of where a project is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hookpkg.project import ENV_FILE, STATE_DIR, load_project, project_paths

CONFIG = """\
version: v2beta1
localRegistry:
  enabled: true
  localbuild: true
images:
  app:
    image: ghcr.io/acme/app
    context: ./src
"""


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """A project whose devspace.yaml is a symlink to a shared file elsewhere."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "devspace.yaml").write_text(CONFIG)
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "devspace.yaml").symlink_to(shared / "devspace.yaml")
    return project


def test_paths_are_where_the_config_is_named_not_where_it_points(linked: Path) -> None:
    paths = project_paths(linked / "devspace.yaml")
    assert paths.directory == linked.resolve()
    assert paths.config == linked.resolve() / "devspace.yaml"
    assert paths.state == linked.resolve() / STATE_DIR
    assert paths.env_file == linked.resolve() / ENV_FILE


def test_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "devspace.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    assert project_paths(Path("devspace.yaml")).directory == tmp_path.resolve()


def test_loaded_config_agrees_with_the_paths(linked: Path) -> None:
    project = load_project(linked / "devspace.yaml")
    assert project.config is not None, [d.format() for d in project.diagnostics]
    assert project.config.directory == project.paths.directory
    # build contexts are relative to the project, not to the shared file
    assert project.config.images["app"].context == linked.resolve() / "src"


def test_invalid_config_gives_diagnostics_and_paths(tmp_path: Path) -> None:
    (tmp_path / "devspace.yaml").write_text(CONFIG.replace("enabled: true", "enabled: maybe"))
    project = load_project(tmp_path / "devspace.yaml")
    assert project.config is None
    assert any(d.severity == "error" for d in project.diagnostics)
    assert project.paths.directory == tmp_path.resolve()


def test_old_version_has_no_config_and_no_error(tmp_path: Path) -> None:
    """A config older than v2beta1 has no localRegistry: nothing to run, nothing wrong."""
    (tmp_path / "devspace.yaml").write_text("version: v1beta11\nimages: {}\n")
    project = load_project(tmp_path / "devspace.yaml")
    assert project.config is None
    assert not [d for d in project.diagnostics if d.severity == "error"]


def test_devreg_env_reads_where_build_writes_with_a_symlinked_config(linked: Path) -> None:
    """The bug this loader fixed: `build`/`watch` wrote .devreg.env beside the
    symlink while `env`/`status`/`stop` looked beside its target."""
    env_file = project_paths(linked / "devspace.yaml").env_file
    env_file.write_text("export RUNTIME_IMAGES_APP=localhost:31234/acme/app:abc\n")
    done = subprocess.run(
        [sys.executable, "-m", "watcher", "env", "-c", str(linked / "devspace.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "RUNTIME_IMAGES_APP=localhost:31234/acme/app:abc" in done.stdout
