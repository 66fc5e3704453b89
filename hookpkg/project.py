"""One loader: the checked config and the project's paths, decided once.

Every runtime command starts here (``devreg build``, ``watch``, ``up``, ``down``,
``env``, ``status``, ``stop``), so they agree on where the project is: the
directory that *holds* the config file named on the command line. A
``devspace.yaml`` that is a symlink to a shared file elsewhere keeps the project
where the symlink is — that is where the user runs devreg, where the build
contexts are relative to, and where ``.devreg.env`` must appear (DevSpace and
docker compose also take the path as given). Resolving the file itself would put
the state of two projects sharing one config in one place.

This module joins :mod:`hookpkg.config` (reading) and :mod:`hookpkg.validate`
(checking); neither imports the other's entry point, so there is no cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hookpkg.config import Config, build_config, load
from hookpkg.errors import Diagnostic
from hookpkg.validate import validate

STATE_DIR = ".devreg"
ENV_FILE = ".devreg.env"


@dataclass(frozen=True)
class Paths:
    """Where a project's files are."""

    config: Path  # the config file as given (absolute; a symlink stays a symlink)
    directory: Path  # the directory holding it (resolved): the project
    state: Path  # <directory>/.devreg: lock, pid, log, status, caches
    env_file: Path  # <directory>/.devreg.env


def project_paths(config: Path) -> Paths:
    """The paths of the project whose config is ``config`` (no file is read)."""
    given = Path(config).absolute()
    directory = given.parent.resolve()
    return Paths(
        config=directory / given.name,
        directory=directory,
        state=directory / STATE_DIR,
        env_file=directory / ENV_FILE,
    )


@dataclass(frozen=True)
class Project:
    """A loaded project: the config when it is valid, every diagnostic, the paths."""

    config: Config | None
    diagnostics: list[Diagnostic]
    paths: Paths


def load_project(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    profiles: Sequence[str] = (),
    activation: bool = True,
) -> Project:
    """Read, validate and build the config at ``path``. ``config`` is None when it has
    errors (or predates ``localRegistry``); the diagnostics say why.

    The profiles are DevSpace's: ``profiles`` (``-p``, in order) after those their
    ``activation`` turns on (unless ``activation`` is False), applied to the
    document before it is validated and built (:mod:`hookpkg.profiles`); an
    error in a profile is a diagnostic like any other."""
    paths = project_paths(path)
    loaded = load(path, env=env, profiles=profiles, activation=activation)
    if loaded.main is None or loaded.old_version is not None:
        return Project(None, loaded.diagnostics, paths)
    diagnostics = loaded.diagnostics + validate(loaded)
    if any(d.severity == "error" for d in diagnostics):
        return Project(None, diagnostics, paths)
    return Project(build_config(loaded, directory=paths.directory), diagnostics, paths)
