"""``devreg env`` as a function: every variable of .devreg.env (written by the real
writer), or one image's, and the errors that say what to run or which image."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookpkg.errors import FatalError
from watcher.cli.commands.env import env
from watcher.daemon import dotenv

VARIABLES = {
    "DEVREG_REGISTRY": "localhost:31234",
    "DEVSPACE_HOOK_IMAGE_NAME": "localhost:31234/acme/api",
    "DEVSPACE_HOOK_IMAGE_NAME_API": "localhost:31234/acme/api",
    "DEVSPACE_HOOK_IMAGE_NAME_MY_WORKER": "localhost:31234/acme/worker",
    "RUNTIME_IMAGES_API": "localhost:31234/acme/api:abc",
    "RUNTIME_IMAGES_API_IMAGE": "localhost:31234/acme/api",
    "RUNTIME_IMAGES_API_TAG": "abc",
    "RUNTIME_IMAGES_MY_WORKER": "localhost:31234/acme/worker:def",
    "RUNTIME_IMAGES_MY_WORKER_IMAGE": "localhost:31234/acme/worker",
    "RUNTIME_IMAGES_MY_WORKER_TAG": "def",
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A project whose .devreg.env holds two images (the config itself is not read)."""
    dotenv.write(tmp_path / ".devreg.env", VARIABLES)
    return tmp_path / "devspace.yaml"


def test_all_variables(config: Path) -> None:
    result = env(config=config)
    assert dict(result.variables) == VARIABLES
    assert result.exit_code == 0


def test_one_image_and_the_registry(config: Path) -> None:
    assert dict(env(config=config, image="my-worker").variables) == {
        "DEVREG_REGISTRY": "localhost:31234",
        "DEVSPACE_HOOK_IMAGE_NAME_MY_WORKER": "localhost:31234/acme/worker",
        "RUNTIME_IMAGES_MY_WORKER": "localhost:31234/acme/worker:def",
        "RUNTIME_IMAGES_MY_WORKER_IMAGE": "localhost:31234/acme/worker",
        "RUNTIME_IMAGES_MY_WORKER_TAG": "def",
    }


def test_the_unsuffixed_hook_variable_goes_with_the_image_it_names(config: Path) -> None:
    """DEVSPACE_HOOK_IMAGE_NAME names one image (api here): it is that image's, not
    the worker's."""
    api = env(config=config, image="api").variables
    assert api["DEVSPACE_HOOK_IMAGE_NAME"] == "localhost:31234/acme/api"
    assert "DEVSPACE_HOOK_IMAGE_NAME" not in env(config=config, image="my-worker").variables


def test_an_image_with_no_variables(config: Path) -> None:
    with pytest.raises(FatalError) as failed:
        env(config=config, image="db")
    assert str(failed.value) == f"no variables for image 'db' in {config.parent / '.devreg.env'}"


def test_before_any_build(tmp_path: Path) -> None:
    with pytest.raises(FatalError) as failed:
        env(config=tmp_path / "devspace.yaml", image="api")
    assert str(failed.value) == (
        f"{tmp_path / '.devreg.env'}: not written yet; run `devreg build` or `devreg watch`"
    )
    assert failed.value.exit_code == 1


def test_the_file_beside_the_config_as_named(tmp_path: Path) -> None:
    """A config named through a link: .devreg.env is beside the link, where devreg
    wrote it, not beside the link's target."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "devspace.yaml").write_text("version: v2beta1\n")
    (tmp_path / "project").mkdir()
    link = tmp_path / "project" / "devspace.yaml"
    link.symlink_to(tmp_path / "elsewhere" / "devspace.yaml")
    dotenv.write(tmp_path / "project" / ".devreg.env", {"DEVREG_REGISTRY": "localhost:1"})
    assert dict(env(config=link).variables) == {"DEVREG_REGISTRY": "localhost:1"}
