"""The variables of SPEC §5: names per image key and their values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

_NON_ENV = re.compile(r"[^A-Z0-9]")
VALUE_RE = re.compile(r"[A-Za-z0-9._:/@-]*\Z")
TAG_PLACEHOLDER = "<tag>"
REGISTRY_VAR = "DEVREG_REGISTRY"
HOOK_IMAGE_VAR = "DEVSPACE_HOOK_IMAGE_NAME"


def env_name(key: str) -> str:
    """``my-app`` -> ``MY_APP``: upper-cased, everything outside A-Z0-9 -> ``_``."""
    return _NON_ENV.sub("_", key.upper())


def names_for(key: str) -> tuple[str, str, str, str]:
    """The four names one image key defines (full, image, tag, hook)."""
    e = env_name(key)
    return (
        f"RUNTIME_IMAGES_{e}",
        f"RUNTIME_IMAGES_{e}_IMAGE",
        f"RUNTIME_IMAGES_{e}_TAG",
        f"{HOOK_IMAGE_VAR}_{e}",
    )


class Delivered(NamedTuple):
    """Where one image ends up: the repository the cluster pulls and its tag."""

    repository: str  # ``localhost:31234/org/app`` or the original image
    tag: str  # a real tag, or ``<tag>`` while unknown


def image_variables(key: str, delivered: Delivered) -> dict[str, str]:
    full, image, tag, hook = names_for(key)
    return {
        full: f"{delivered.repository}:{delivered.tag}",
        image: delivered.repository,
        tag: delivered.tag,
        hook: delivered.repository,
    }


def all_variables(
    delivered: Mapping[str, Delivered], *, registry: str | None, image_count: int
) -> dict[str, str]:
    """Every variable, sorted by name. ``registry`` is set when a local
    registry is in use; ``image_count`` is the number of configured images
    (``DEVSPACE_HOOK_IMAGE_NAME`` alone exists only for exactly one)."""
    out: dict[str, str] = {}
    for key, d in delivered.items():
        out.update(image_variables(key, d))
    if registry is not None:
        out[REGISTRY_VAR] = registry
    if image_count == 1 and len(delivered) == 1:
        (d,) = delivered.values()
        out[HOOK_IMAGE_VAR] = d.repository
    return dict(sorted(out.items()))


def collisions(keys: list[str]) -> dict[str, tuple[str, str]]:
    """Keys whose names clash with an earlier key's: ``{later: (earlier, name)}``.

    Catches ``my-app``/``my_app`` and also ``app``/``app_image``
    (``RUNTIME_IMAGES_APP_IMAGE`` from both).
    """
    owner: dict[str, str] = {}
    out: dict[str, tuple[str, str]] = {}
    for key in keys:
        for name in names_for(key):
            if name in owner and owner[name] != key:
                out.setdefault(key, (owner[name], name))
        for name in names_for(key):
            owner.setdefault(name, key)
    return out


def valid_value(value: str) -> bool:
    """Values safe to ``source`` unquoted: ``[A-Za-z0-9._:/@-]``."""
    return bool(VALUE_RE.match(value))
