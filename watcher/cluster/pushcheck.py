"""May this machine push to an image's own registry? (SPEC §2)

For a remote cluster with ``localRegistry.enabled`` unset, the local registry
is used only when the image's registry refuses a push. The check does what a
``docker push`` does before the first layer, and nothing that leaves a trace:

1. credentials from the Docker config (``$DOCKER_CONFIG/config.json`` or
   ``~/.docker/config.json``), as the docker SDK finds them: ``credHelpers``
   for that registry, else ``credsStore``, else ``auths``;
2. ``GET /v2/``; when challenged, a token with scope
   ``repository:<repo>:push,pull`` (Bearer) or the credentials themselves
   (Basic);
3. ``POST /v2/<repo>/blobs/uploads/`` expecting 201/202, then ``DELETE`` of
   the upload it started.

Any failure, network errors included, is "no permission", with the reason in
words. A server that answers plain HTTP on its port (an insecure registry)
is asked again over HTTP. Answers are cached per repository for the life of
the :class:`PushChecker`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import ssl
import threading
import urllib.parse
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hookpkg.reference import InvalidReference, parse_reference
from watcher.cluster.httpconn import HTTPError, Response, network_words
from watcher.cluster.registryhttp import request as http_request

DEFAULT_TIMEOUT = 5.0
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    identity_token: str | None = None  # OAuth2 refresh token (``docker login`` to some registries)
    registry_token: str | None = None  # a bearer token to send as is
    source: str = ""  # where they came from, for messages

    def basic(self) -> str | None:
        if self.username is None or self.password is None:
            return None
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class PushCheck:
    repository: str  # ``host/path`` as asked
    allowed: bool
    reason: str
    scheme: str | None = None  # "https" or "http" when the registry answered

    def as_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "allowed": self.allowed,
            "reason": self.reason,
            "scheme": self.scheme,
        }


def registry_and_path(image: str) -> tuple[str, str]:
    """``nginx`` -> (registry-1.docker.io, library/nginx); ``ghcr.io/o/a`` -> (ghcr.io, o/a)."""
    ref = parse_reference(image)
    domain = ref.domain
    if domain is None or domain in _HUB_NAMES:
        path = ref.path if "/" in ref.path else f"library/{ref.path}"
        return DOCKER_HUB_API, path
    return domain, ref.path


# --- Docker config ----------------------------------------------------------------------------


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    directory = env.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _plain_auths_entry(path: Path, key: str, resolve: Any) -> Credentials | None:
    """``auths`` entries with ``username``/``password`` (or ``registrytoken``)
    written out rather than as ``auth``: the Docker CLI reads them, the docker
    SDK does not (it gives an empty entry)."""
    try:
        auths = json.loads(path.read_text(encoding="utf-8")).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return None
    for name, entry in auths.items():
        if not isinstance(entry, dict) or resolve(name) != key:
            continue
        source = f"{path} auths[{name!r}]"
        if entry.get("registrytoken"):
            return Credentials(registry_token=str(entry["registrytoken"]), source=source)
        if entry.get("username") and entry.get("password"):
            return Credentials(
                username=str(entry["username"]), password=str(entry["password"]), source=source
            )
    return None


def find_credentials(registry: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials Docker would use for ``registry`` (an API host), found
    by the docker SDK (``docker.auth``: ``credHelpers``, else ``credsStore``,
    else ``auths``, helpers run through ``docker.credentials``, found on the
    process's PATH). The push check runs in ``build`` and ``watch``, which load
    the SDK anyway to push."""
    from docker import auth as docker_auth
    from docker.errors import DockerException

    env = os.environ if env is None else env
    path = docker_config_path(env)
    key = None if registry == DOCKER_HUB_API else registry  # the SDK's name for Docker Hub
    try:
        with warnings.catch_warnings():
            # "docker-credential-X not installed": the check says "has none" itself.
            warnings.simplefilter("ignore", UserWarning)
            config = docker_auth.load_config(config_path=str(path), credstore_env=dict(env))
            entry = config.resolve_authconfig(key) or {}
            store = config.get_credential_store(key)
    except (DockerException, OSError, ValueError):
        return None  # an unreadable config or a failing helper: no credentials
    source = f"docker-credential-{store}" if "ServerAddress" in entry else f"{path} auths"
    if entry.get("IdentityToken"):
        return Credentials(identity_token=str(entry["IdentityToken"]), source=source)
    user = entry.get("Username", entry.get("username"))
    password = entry.get("Password", entry.get("password"))
    if user is not None and password is not None:
        return Credentials(username=str(user), password=str(password), source=source)
    resolve = docker_auth.resolve_index_name
    return _plain_auths_entry(path, resolve(key or docker_auth.INDEX_NAME), resolve)


# --- HTTP ---------------------------------------------------------------------------------------


class _Refused(Exception):
    """The check's answer is "no", for the reason in the message."""


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…"`` -> ("bearer", {realm, service})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def pick_challenge(headers: list[str]) -> tuple[str, dict[str, str]]:
    """The challenge to answer among a 401's ``WWW-Authenticate`` headers
    (a registry may offer several): Bearer, else Basic, else the first."""
    challenges = [parse_challenge(h) for h in headers if h.strip()]
    for wanted in ("bearer", "basic"):
        for scheme, params in challenges:
            if scheme == wanted:
                return scheme, params
    return challenges[0] if challenges else ("", {})


def _error_words(resp: Response) -> str:
    try:
        errors = json.loads(resp.body).get("errors") or []
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError):
        text = ""
    return f"{resp.status}" + (f" {text}" if text else "")


class PushChecker:
    """Runs the check; one per devreg run, so answers are cached per repository."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        sslctx: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        self._env = dict(os.environ if env is None else env)
        self._sslctx = sslctx or ssl.create_default_context()
        self._cache: dict[tuple[str, str], PushCheck] = {}
        self._lock = threading.Lock()

    def check(self, image: str) -> PushCheck:
        try:
            registry, path = registry_and_path(image)
        except InvalidReference as e:
            return PushCheck(image, False, f"not an image reference: {e}")
        key = (registry, path)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = self._check(registry, path)
        with self._lock:
            self._cache.setdefault(key, result)
        return result

    # -- steps --

    def _request(self, method: str, url: str, **kw: Any) -> Response:
        return http_request(
            method, url, timeout=self.timeout, sslctx=self._sslctx, env=self._env, **kw
        )

    def _ping(self, registry: str) -> tuple[str, Response]:
        """``GET /v2/`` over HTTPS, or over HTTP when the server speaks HTTP."""
        try:
            return "https", self._request("GET", f"https://{registry}/v2/")
        except ssl.SSLCertVerificationError as e:
            raise _Refused(network_words(e, self.timeout)) from None
        except (ssl.SSLError, ConnectionResetError, HTTPError) as tls_error:
            # The TLS handshake met something else: an HTTP server answers
            # the ClientHello with an HTTP 400. Ask it in its language.
            try:
                resp = self._request("GET", f"http://{registry}/v2/")
            except (OSError, HTTPError) as e:
                raise _Refused(
                    f"HTTPS failed ({network_words(tls_error, self.timeout)}) and plain HTTP "
                    f"too ({network_words(e, self.timeout)})"
                ) from None
            if resp.status not in (200, 401):
                raise _Refused(
                    f"HTTPS failed ({network_words(tls_error, self.timeout)}); over plain HTTP "
                    f"/v2/ answered {resp.status}, not a registry"
                ) from None
            return "http", resp
        except OSError as e:
            raise _Refused(network_words(e, self.timeout)) from None

    def _token(self, params: Mapping[str, str], path: str, creds: Credentials | None) -> str:
        realm = params.get("realm")
        if not realm:
            raise _Refused("the registry's Bearer challenge names no realm")
        scope = f"repository:{path}:push,pull"
        try:
            if creds is not None and creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "service": params.get("service", ""),
                    "scope": scope,
                    "client_id": "devreg",
                }
                resp = self._request(
                    "POST",
                    realm,
                    body=urllib.parse.urlencode(form).encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            else:
                query = {"scope": scope}
                if params.get("service"):
                    query["service"] = params["service"]
                sep = "&" if "?" in realm else "?"
                headers = {}
                basic = creds.basic() if creds else None
                if basic:
                    headers["Authorization"] = f"Basic {basic}"
                resp = self._request(
                    "GET", realm + sep + urllib.parse.urlencode(query), headers=headers
                )
        except (OSError, HTTPError) as e:
            raise _Refused(
                f"token service {realm} did not answer ({network_words(e, self.timeout)})"
            ) from None
        if resp.status != 200:
            raise _Refused(f"token service {realm} refused: {_error_words(resp)}")
        try:
            doc = json.loads(resp.body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise _Refused(f"token service {realm} gave no token")
        return str(token)

    def _authorization(
        self, ping: Response, registry: str, path: str, creds: Credentials | None
    ) -> dict[str, str]:
        if ping.status == 200:
            return {}
        if ping.status != 401:
            raise _Refused(f"GET /v2/ answered {_error_words(ping)}")
        scheme, params = pick_challenge(ping.header_all("www-authenticate"))
        if creds is not None and creds.registry_token:
            return {"Authorization": f"Bearer {creds.registry_token}"}
        if scheme == "bearer":
            return {"Authorization": f"Bearer {self._token(params, path, creds)}"}
        if scheme == "basic":
            basic = creds.basic() if creds else None
            if not basic:
                raise _Refused(
                    f"{registry} asks for a login and the Docker config "
                    f"({docker_config_path(self._env)}) has none for it"
                )
            return {"Authorization": f"Basic {basic}"}
        raise _Refused(f"GET /v2/ asked for an unknown authentication scheme {scheme!r}")

    def _check(self, registry: str, path: str) -> PushCheck:
        repository = f"{registry}/{path}"
        scheme: str | None = None
        try:
            scheme, ping = self._ping(registry)
            creds = find_credentials(registry, self._env)
            auth = self._authorization(ping, registry, path, creds)
            base = f"{scheme}://{registry}"
            try:
                resp = self._request(
                    "POST",
                    f"{base}/v2/{path}/blobs/uploads/",
                    headers={**auth, "Content-Length": "0"},
                )
            except (OSError, HTTPError) as e:
                raise _Refused(f"blob upload: {network_words(e, self.timeout)}") from None
            if resp.status not in (201, 202):
                who = f" (credentials from {creds.source})" if creds else " (no credentials)"
                raise _Refused(f"blob upload refused: {_error_words(resp)}{who}")
            location = resp.header("location")
            if resp.status == 202 and location:
                # Leave nothing behind: cancel the upload we just started.
                # (A failed DELETE is harmless: registries expire abandoned uploads.)
                with contextlib.suppress(OSError, HTTPError):
                    self._request(
                        "DELETE", urllib.parse.urljoin(base + "/", location), headers=auth
                    )
            return PushCheck(
                repository, True, f"blob upload accepted ({resp.status}) over {scheme}", scheme
            )
        except _Refused as e:
            return PushCheck(repository, False, str(e), scheme)
