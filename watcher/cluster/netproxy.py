"""Which proxy a connection goes through: ``HTTPS_PROXY`` / ``HTTP_PROXY`` and
``NO_PROXY`` as Go programs read them (kubectl and docker are Go programs,
and a user's proxy settings were written for them), and kubeconfig
``proxy-url`` for an API server (:mod:`watcher.cluster.kube`).

The rules (Go's ``httpproxy``):

* ``https`` URLs use ``HTTPS_PROXY``, ``http`` URLs ``HTTP_PROXY``; the
  upper-case name wins over the lower-case one; a proxy without a scheme is
  ``http://``.
* ``localhost`` and loopback addresses never go through a proxy.
* ``NO_PROXY`` is a comma-separated list: ``*`` (no proxy at all), an IP
  address, a CIDR block (``10.0.0.0/8``), a domain (``example.com``: it and
  its subdomains), a domain with a leading dot (``.example.com`` or
  ``*.example.com``: subdomains only); a ``:port`` suffix limits an entry to
  that port.

Only ``http://`` proxies are supported (HTTPS goes through them with
``CONNECT``); another scheme is an error naming where it was set.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from hookpkg.errors import FatalError


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # ``Basic …`` from ``user:password@`` in the URL
    source: str  # where it was set, for messages: ``HTTPS_PROXY``

    def describe(self) -> str:
        return f"proxy {self.host}:{self.port} (from {self.source})"

    def url(self) -> str:
        """``http://host:port`` (credentials travel in ``authorization``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_proxy(value: str, source: str) -> Proxy:
    """``http://user:pw@host:3128`` (or ``host:3128``) -> :class:`Proxy`."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() != "http":
        raise FatalError(
            f"{source} is {value!r}: devreg supports http:// proxies only "
            f"(not {parts.scheme}://); set an http:// proxy or unset {source}"
        )
    try:
        port = parts.port or 80
    except ValueError:
        raise FatalError(f"{source} is {value!r}: the port is not a number") from None
    if not parts.hostname:
        raise FatalError(f"{source} is {value!r}: no proxy host in it")
    authorization = None
    if parts.username is not None:
        pair = (
            urllib.parse.unquote(parts.username) + ":" + urllib.parse.unquote(parts.password or "")
        )
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(parts.hostname, port, authorization, source)


def _env(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name)
        if value:
            return name, value
    return None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:80`` -> (host, 80); ``[::1]:80`` -> (::1, 80); ``::1`` -> (::1, None)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def bypasses(host: str, port: int, no_proxy: str) -> bool:
    """Does ``NO_PROXY`` (its value) exempt ``host:port`` from the proxy?"""
    host = host.lower().strip("[]").rstrip(".")
    address = _ip(host)
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue
            if address is not None and address in network:
                return True
            continue
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        entry_ip = _ip(name)
        if entry_ip is not None:
            if address == entry_ip:
                return True
            continue
        name = name.rstrip(".")
        if name.startswith("*."):
            name = name[1:]
        if name.startswith("."):
            if host.endswith(name):
                return True
        elif host == name or host.endswith("." + name):
            return True
    return False


def is_loopback(host: str) -> bool:
    host = host.lower().strip("[]").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _ip(host)
    return address is not None and address.is_loopback


def proxy_for(
    scheme: str, host: str, port: int, env: Mapping[str, str] | None = None
) -> Proxy | None:
    """The proxy for ``scheme://host:port`` from the environment, or None
    (direct)."""
    env = os.environ if env is None else env
    if is_loopback(host):
        return None
    names = ("HTTPS_PROXY", "https_proxy") if scheme == "https" else ("HTTP_PROXY", "http_proxy")
    found = _env(env, *names)
    if found is None:
        return None
    no_proxy = _env(env, "NO_PROXY", "no_proxy")
    if no_proxy is not None and bypasses(host, port, no_proxy[1]):
        return None
    name, value = found
    return parse_proxy(value, name)
