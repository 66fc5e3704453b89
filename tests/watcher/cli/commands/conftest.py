from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from watcher.cluster.kube import Kube


@pytest.fixture
def namespace(testenv: Any) -> Iterator[str]:
    """A fresh namespace name for the registry; deleted afterwards."""
    name = f"devreg-t-{secrets.token_hex(4)}"
    yield name
    with Kube(testenv.context) as kube:
        kube.delete("Namespace", None, name)


@pytest.fixture
def own_registry(testenv: Any) -> Iterator[None]:
    """No registry published by the cluster (KEP-1755) while the test runs:
    devreg deploys its own."""
    from tests.watcher.e2e import no_published_registry

    with no_published_registry(testenv):
        yield
