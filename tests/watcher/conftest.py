from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Every test joins what it started (watchdog's ``_no_thread_leaks``)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def core(kube_api_client: Any) -> Any:
    """The official client's CoreV1Api for the test cluster (an independent reader)."""
    from kubernetes import client

    return client.CoreV1Api(kube_api_client)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, testenv: Any, core: Any) -> Iterator[str]:
    """A namespace of its own, named after the test module (devreg creates it), while no
    registry is published by the cluster (KEP-1755) so that devreg deploys its own.
    Modules that need another kind of namespace define their own fixture."""
    from kubernetes import client

    from tests.watcher.e2e import no_published_registry

    prefix = request.module.__name__.rsplit(".", 1)[-1].removesuffix("_test").replace("_", "-")
    name = f"{prefix[:20]}-{uuid.uuid4().hex[:8]}"
    with no_published_registry(testenv):
        yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name, grace_period_seconds=0)
