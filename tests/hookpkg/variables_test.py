from __future__ import annotations

import pytest

from hookpkg.variables import Delivered, all_variables, collisions, env_name, valid_value


@pytest.mark.parametrize(
    ("key", "name"),
    [("app", "APP"), ("my-app", "MY_APP"), ("api.v2", "API_V2"), ("Ünï", "_N_"), ("a b", "A_B")],
)
def test_env_name(key: str, name: str) -> None:
    assert env_name(key) == name


def test_all_variables_single_image() -> None:
    out = all_variables(
        {"app": Delivered("localhost:31234/org/app", "abc")},
        registry="localhost:31234",
        image_count=1,
    )
    assert out == {
        "DEVREG_REGISTRY": "localhost:31234",
        "DEVSPACE_HOOK_IMAGE_NAME": "localhost:31234/org/app",
        "DEVSPACE_HOOK_IMAGE_NAME_APP": "localhost:31234/org/app",
        "RUNTIME_IMAGES_APP": "localhost:31234/org/app:abc",
        "RUNTIME_IMAGES_APP_IMAGE": "localhost:31234/org/app",
        "RUNTIME_IMAGES_APP_TAG": "abc",
    }
    assert list(out) == sorted(out)


def test_no_registry_no_single_hook_name_for_two_images() -> None:
    out = all_variables(
        {"a": Delivered("a", "1"), "b": Delivered("b", "2")}, registry=None, image_count=2
    )
    assert "DEVREG_REGISTRY" not in out and "DEVSPACE_HOOK_IMAGE_NAME" not in out


def test_collisions() -> None:
    assert collisions(["my-app", "my_app", "app", "app_tag", "other"]) == {
        "my_app": ("my-app", "RUNTIME_IMAGES_MY_APP"),
        "app_tag": ("app", "RUNTIME_IMAGES_APP_TAG"),
    }


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("localhost:5000/a/b:c", True),
        ("a@sha256:00", True),
        ("a b", False),
        ("$(x)", False),
        ("a'b", False),
        ("", True),
    ],
)
def test_valid_value(value: str, ok: bool) -> None:
    assert valid_value(value) is ok
