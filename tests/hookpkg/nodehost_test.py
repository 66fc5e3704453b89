"""hookpkg.nodehost: DEVREG_NODE_HOST, the loopback host nodes pull through."""

from __future__ import annotations

import pytest

from hookpkg.nodehost import NodeHostError, node_host, registry_host


@pytest.mark.parametrize(
    ("value", "host"),
    [
        (None, "localhost"),
        ("", "localhost"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        (" 127.0.0.2 ", "127.0.0.2"),
        ("::1", "[::1]"),
        ("[::1]", "[::1]"),
    ],
)
def test_loopback_hosts(value: str | None, host: str) -> None:
    env = {} if value is None else {"DEVREG_NODE_HOST": value}
    assert node_host(env) == host


@pytest.mark.parametrize("value", ["10.0.0.1", "example.com", "::2", "127.0.0.1:5000", "0.0.0.0"])
def test_anything_else_is_a_usage_error_naming_the_variable(value: str) -> None:
    with pytest.raises(NodeHostError) as e:
        node_host({"DEVREG_NODE_HOST": value})
    assert "DEVREG_NODE_HOST" in str(e.value) and repr(value) in str(e.value)
    assert e.value.exit_code == 2


def test_registry_host_with_and_without_a_port() -> None:
    assert registry_host(None, {}) == "localhost:[NODE_PORT]"
    assert registry_host(31234, {}) == "localhost:31234"
    assert registry_host(31234, {"DEVREG_NODE_HOST": "127.0.0.1"}) == "127.0.0.1:31234"
