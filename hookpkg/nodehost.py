"""The host part of the registry address nodes pull: ``localhost`` unless
``DEVREG_NODE_HOST`` says otherwise.

SPEC §3 names images ``localhost:<NODE_PORT>/…``. On a node that resolves ``localhost``
to ``::1`` first (k3d, some distributions' ``/etc/hosts``), node ports answer on IPv4
only and every pull is refused (devspace-sh/devspace#2852); the pull probe says so and
offers ``DEVREG_NODE_HOST=127.0.0.1``. With it set, ``127.0.0.1:<NODE_PORT>`` takes
``localhost:<NODE_PORT>``'s place everywhere: in the rewrite, the preview, the
variables and ``.devreg.env``, and where this machine pushes. Only loopback addresses
are accepted: a node must reach the registry through its own loopback (SPEC §3), and the
runtimes' plain-HTTP fallback holds for loopback hosts only.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

from hookpkg.errors import FatalError

ENV = "DEVREG_NODE_HOST"
DEFAULT = "localhost"


class NodeHostError(FatalError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


def node_host(env: Mapping[str, str] | None = None) -> str:
    """``localhost``, an IPv4 loopback address, or ``[::1]``; raises
    :class:`NodeHostError` naming the variable for anything else."""
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    if not raw or raw == DEFAULT:
        return DEFAULT
    try:
        address = ipaddress.ip_address(raw.strip("[]"))
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise NodeHostError(
            f"{ENV}={raw!r} is not a loopback address: use localhost (the default), "
            "127.0.0.1 or ::1 (nodes pull the registry through their own loopback)"
        )
    return f"[{address}]" if address.version == 6 else str(address)


def registry_host(node_port: int | None, env: Mapping[str, str] | None = None) -> str:
    """``localhost:31234``, or ``localhost:[NODE_PORT]`` while the port is unknown."""
    return f"{node_host(env)}:{node_port if node_port else '[NODE_PORT]'}"
