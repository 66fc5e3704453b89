from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from watcher.kube import Kube


@pytest.fixture
def namespace(testenv: Any) -> Iterator[str]:
    """A fresh namespace name for the registry; deleted afterwards."""
    name = f"devreg-t-{secrets.token_hex(4)}"
    yield name
    with Kube(testenv.context) as kube:
        kube.delete("Namespace", None, name)
