"""A Docker token service for the real registry's ``auth: token`` mode.

The registry (Debian's ``docker-registry``) verifies every token itself: the
RS256 signature against the certificate in its ``rootcertbundle``, issuer,
audience, expiry and the granted actions. This server only issues them, the
way Docker Hub's auth service does: credentials that match get
``push,pull``, anonymous callers get ``pull``. Signing goes through the
``openssl`` command so no Python crypto package is needed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SERVICE = "devreg-test-registry"
ISSUER = "devreg-test-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenService:
    realm: str
    cert: Path
    key: Path
    users: dict[str, str]

    def registry_auth_yaml(self) -> str:
        return (
            "auth:\n  token:\n"
            f"    realm: {self.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
            f"    rootcertbundle: {self.cert}\n"
        )


def _make_key(tmp: Path) -> tuple[Path, Path, str]:
    key, cert = tmp / "token.key", tmp / "token.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=devreg-test-token", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    der = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return key, cert, base64.b64encode(der).decode()


def _sign(key: Path, data: bytes) -> bytes:
    return subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(key)],
        input=data,
        check=True,
        capture_output=True,
    ).stdout


@contextlib.contextmanager
def token_service(tmp: Path, users: dict[str, str]) -> Iterator[TokenService]:
    tmp.mkdir(parents=True, exist_ok=True)
    key, cert, x5c = _make_key(tmp)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            subject = ""
            actions = ["pull"]
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if users.get(user) != password:
                    self.send_response(401)
                    self.end_headers()
                    return
                subject, actions = user, ["push", "pull"]
            access = []
            scope = query.get("scope", "")
            if scope.startswith("repository:"):
                _, name, wanted = scope.split(":")
                granted = [a for a in wanted.split(",") if a in actions]
                access.append({"type": "repository", "name": name, "actions": granted})
            now = int(time.time())
            claims = {
                "iss": ISSUER,
                "sub": subject,
                "aud": query.get("service", ""),
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": secrets.token_hex(8),
                "access": access,
            }
            head = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
            signing_input = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(claims).encode())}"
            token = f"{signing_input}.{_b64(_sign(key, signing_input.encode()))}"
            body = json.dumps({"token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="token-service", daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield TokenService(f"http://127.0.0.1:{port}/token", cert, key, users)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
