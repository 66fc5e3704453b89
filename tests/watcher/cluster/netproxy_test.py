"""Which proxy a connection takes: the rules of HTTPS_PROXY / HTTP_PROXY /
NO_PROXY (pure; the end-to-end tests through a real proxy are in
proxy_test.py)."""

from __future__ import annotations

import base64

import pytest

from hookpkg.errors import FatalError
from watcher.cluster.netproxy import Proxy, bypasses, parse_proxy, proxy_for


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "expected"),
    [
        pytest.param("registry.corp", 443, "*", True, id="star"),
        pytest.param("registry.corp", 443, "registry.corp", True, id="host"),
        pytest.param("REGISTRY.corp", 443, "registry.CORP", True, id="case"),
        pytest.param("a.registry.corp", 443, "registry.corp", True, id="domain-subdomain"),
        pytest.param("xregistry.corp", 443, "registry.corp", False, id="not-a-suffix-label"),
        pytest.param("registry.corp", 443, ".registry.corp", False, id="dot-subdomains-only"),
        pytest.param("a.registry.corp", 443, ".registry.corp", True, id="dot-subdomain"),
        pytest.param("a.registry.corp", 443, "*.registry.corp", True, id="star-dot"),
        pytest.param("registry.corp", 5000, "registry.corp:5000", True, id="port-match"),
        pytest.param("registry.corp", 443, "registry.corp:5000", False, id="port-other"),
        pytest.param("10.1.2.3", 6443, "10.0.0.0/8", True, id="cidr"),
        pytest.param("11.1.2.3", 6443, "10.0.0.0/8", False, id="cidr-outside"),
        pytest.param("10.1.2.3", 6443, "10.1.2.3", True, id="ip"),
        pytest.param("10.1.2.3", 6443, "10.1.2.3:6443", True, id="ip-port"),
        pytest.param("10.1.2.3", 443, "10.1.2.3:6443", False, id="ip-other-port"),
        pytest.param("fd00::5", 443, "fd00::/64", True, id="cidr-v6"),
        pytest.param("[fd00::5]", 443, "[fd00::5]:443", True, id="v6-port"),
        pytest.param("registry.corp", 443, "other.corp, registry.corp", True, id="list-spaces"),
        pytest.param("registry.corp", 443, "", False, id="empty"),
        pytest.param("registry.corp", 443, ",, ,", False, id="only-separators"),
        pytest.param("registry.corp", 443, "not/a/cidr", False, id="bad-cidr-ignored"),
    ],
)
def test_bypasses(host: str, port: int, no_proxy: str, expected: bool) -> None:
    assert bypasses(host, port, no_proxy) is expected


PROXY = {"HTTPS_PROXY": "http://proxy.corp:3128", "HTTP_PROXY": "proxy.corp:8080"}


@pytest.mark.parametrize(
    ("scheme", "host", "env", "expected"),
    [
        pytest.param("https", "reg.corp", PROXY, ("proxy.corp", 3128, "HTTPS_PROXY"), id="https"),
        pytest.param("http", "reg.corp", PROXY, ("proxy.corp", 8080, "HTTP_PROXY"), id="http"),
        pytest.param(
            "https",
            "reg.corp",
            {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"},
            ("upper", 2, "HTTPS_PROXY"),
            id="upper-case-wins",
        ),
        pytest.param(
            "https", "reg.corp", {"https_proxy": "lower:1"}, ("lower", 1, "https_proxy"), id="lower"
        ),
        pytest.param("https", "reg.corp", {}, None, id="none"),
        pytest.param("https", "reg.corp", {"HTTP_PROXY": "p:1"}, None, id="https-ignores-http"),
        pytest.param("https", "localhost", PROXY, None, id="localhost"),
        pytest.param("http", "127.0.0.1", PROXY, None, id="loopback-v4"),
        pytest.param("http", "127.8.0.1", PROXY, None, id="loopback-net"),
        pytest.param("http", "::1", PROXY, None, id="loopback-v6"),
        pytest.param("https", "reg.corp", {**PROXY, "NO_PROXY": ".corp"}, None, id="no-proxy"),
        pytest.param("https", "reg.corp", {**PROXY, "no_proxy": "reg.corp"}, None, id="no-lower"),
    ],
)
def test_proxy_for(
    scheme: str, host: str, env: dict[str, str], expected: tuple[str, int, str] | None
) -> None:
    proxy = proxy_for(scheme, host, 443, env)
    assert (None if proxy is None else (proxy.host, proxy.port, proxy.source)) == expected


def test_credentials_in_the_proxy_url() -> None:
    proxy = parse_proxy("http://al%40ice:p%3Aw@proxy.corp:3128/", "HTTPS_PROXY")
    assert proxy == Proxy(
        "proxy.corp",
        3128,
        "Basic " + base64.b64encode(b"al@ice:p:w").decode(),
        "HTTPS_PROXY",
    )
    assert proxy.url() == "http://proxy.corp:3128"  # the password stays out of messages


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("socks5://p:1080", "supports http:// proxies only", id="socks"),
        pytest.param("https://p:443", "not https://", id="https-proxy"),
        pytest.param("http://p:port", "not a number", id="port"),
        pytest.param("http://:3128", "no proxy host", id="host"),
    ],
)
def test_unsupported_proxy_is_a_clear_error(value: str, message: str) -> None:
    with pytest.raises(FatalError, match=message) as e:
        proxy_for("https", "reg.corp", 443, {"HTTPS_PROXY": value})
    assert "HTTPS_PROXY" in str(e.value)
