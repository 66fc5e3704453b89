"""``devreg env [--image KEY] [--format dotenv|json] [-p NAME…]``: print the
variables of ``.devreg.env`` (what the last successful builds delivered).

With ``-p`` (or ``--disable-profile-activation``) the file must have been
written with the profiles those flags apply: variables of another profile's
images would be the wrong ones to deploy, so that is an error naming both."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hookpkg.errors import FatalError
from hookpkg.project import load_project, project_paths
from hookpkg.variables import HOOK_IMAGE_VAR, REGISTRY_VAR, names_for
from watcher import console
from watcher.cli.results import EnvResult
from watcher.daemon import dotenv


def env(
    *,
    config: Path = Path("devspace.yaml"),
    image: str | None = None,
    profiles: Sequence[str] = (),
    profile_activation: bool = True,
) -> EnvResult:
    path = project_paths(config).env_file
    if not path.exists():
        raise FatalError(f"{path}: not written yet; run `devreg build` or `devreg watch`")
    if profiles or not profile_activation:
        _same_profiles(config, path, profiles, profile_activation)
    variables = dotenv.read(path)
    if image is not None:
        wanted = set(names_for(image)) | {REGISTRY_VAR}
        selected = {k: v for k, v in variables.items() if k in wanted}
        if not any(k in selected for k in names_for(image)):
            raise FatalError(f"no variables for image {image!r} in {path}")
        single = variables.get(HOOK_IMAGE_VAR)
        if single is not None and single == selected.get(names_for(image)[1]):
            selected[HOOK_IMAGE_VAR] = single
        variables = selected
    return EnvResult(variables)


def _same_profiles(config: Path, path: Path, profiles: Sequence[str], activation: bool) -> None:
    project = load_project(config, profiles=profiles, activation=activation)
    if project.config is None:
        console.diagnostics(project.diagnostics, loaded=False)
        raise FatalError(f"{config}: the configuration has errors (see above)")
    wanted, written = project.config.profiles, dotenv.read_profiles(path)
    if written != wanted:
        raise FatalError(
            f"{path} holds the images built with {_named(written)}, not with {_named(wanted)}; "
            f"run `devreg build` with the same profiles first"
        )


def _named(profiles: Sequence[str]) -> str:
    return "profiles " + ", ".join(map(repr, profiles)) if profiles else "no profile"
