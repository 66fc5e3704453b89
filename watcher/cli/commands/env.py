"""``devreg env [--image KEY] [--format dotenv|json]``: print the variables
of ``.devreg.env`` (what the last successful builds delivered)."""

from __future__ import annotations

from pathlib import Path

from hookpkg.errors import FatalError
from hookpkg.project import project_paths
from hookpkg.variables import HOOK_IMAGE_VAR, REGISTRY_VAR, names_for
from watcher.cli.results import EnvResult
from watcher.daemon import dotenv


def env(*, config: Path = Path("devspace.yaml"), image: str | None = None) -> EnvResult:
    path = project_paths(config).env_file
    if not path.exists():
        raise FatalError(f"{path}: not written yet; run `devreg build` or `devreg watch`")
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
