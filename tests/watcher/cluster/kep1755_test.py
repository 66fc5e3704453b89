"""Reading the KEP-1755 ConfigMap's data (the cluster side is in
registry_test.py, against the real API server)."""

from __future__ import annotations

import pytest

from watcher.cluster.kep1755 import InvalidHosting, LocalRegistryHosting, parse_hosting

KEY = "localRegistryHosting.v1"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {
                KEY: 'host: "localhost:5001"\nhelp: "https://kind.sigs.k8s.io/docs/user/local-registry/"\n'
            },
            LocalRegistryHosting(
                "localhost:5001", help="https://kind.sigs.k8s.io/docs/user/local-registry/"
            ),
            id="kind",
        ),
        pytest.param(
            {
                KEY: "host: localhost:5000\nhostFromContainerRuntime: registry:5000\n"
                "hostFromClusterNetwork: registry.kube-system:5000\n"
            },
            LocalRegistryHosting(
                "localhost:5000",
                host_from_container_runtime="registry:5000",
                host_from_cluster_network="registry.kube-system:5000",
            ),
            id="all-fields",
        ),
        pytest.param({}, None, id="no-v1-entry"),
        pytest.param({"localRegistryHosting.v2": "host: x"}, None, id="only-unknown-version"),
    ],
)
def test_parse_hosting(data: dict[str, str], expected: LocalRegistryHosting | None) -> None:
    assert parse_hosting(data) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("host: [", "is not YAML", id="yaml"),
        pytest.param("- a", "is not a mapping", id="list"),
        pytest.param("help: x", "has no host", id="no-host"),
        pytest.param("host: ''", "has no host", id="empty-host"),
    ],
)
def test_parse_hosting_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidHosting, match=message):
        parse_hosting({KEY: text})
