"""Image references, with the grammar of distribution's ``reference`` package.

The first path component is a registry host when it contains ``.`` or ``:``
or is ``localhost`` (SPEC §4); no ``docker.io`` or ``library/`` is added.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from hookpkg.errors import ascii_note, shown

# The grammar is ASCII (Go's regexp classes are): every pattern is compiled
# re.ASCII and matched whole (fullmatch), so neither a Unicode digit nor a
# final newline gets through.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*", re.ASCII)
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?", re.ASCII
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(
    r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}", re.ASCII
)
NAME_MAX = 255


class InvalidReference(ValueError):
    """The string is not an image reference; the message says which part is wrong."""


class Reference(NamedTuple):
    domain: str | None  # registry host[:port], or None for Docker Hub shorthand
    path: str  # repository path without the host: ``org/app``
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """Host and path, without tag or digest (what the user wrote)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def split_domain(name: str) -> tuple[str | None, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first, rest
    return None, name


def parse_reference(text: str) -> Reference:
    """Parse ``[host[:port]/]path[:tag][@digest]``; raise :class:`InvalidReference`."""
    if not text:
        raise InvalidReference("the image reference is empty")
    if text != text.strip():
        raise InvalidReference(
            "the image reference has leading or trailing whitespace (a space, tab or newline)"
        )
    rest, _, digest = text.partition("@")
    if "@" in text and not _DIGEST.fullmatch(digest):
        raise InvalidReference(
            f"invalid digest {shown(digest)} (expected algorithm:hex, e.g. sha256:…)"
            + ascii_note(digest)
        )
    name, tag = rest, None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(
                f"invalid tag {shown(tag)} (ASCII letters, digits, '_', '.', '-', at most 128, "
                "not starting with '.' or '-')" + ascii_note(tag)
            )
    domain, path = split_domain(name)
    if domain is not None and not _DOMAIN.fullmatch(domain):
        raise InvalidReference(f"invalid registry host {shown(domain)}{ascii_note(domain)}")
    if not path:
        raise InvalidReference("the repository path is empty")
    for component in path.split("/"):
        if not component:
            raise InvalidReference(
                f"empty path component in {shown(name)} (look for '//' or a '/' at an end)"
            )
        if not _COMPONENT.fullmatch(component):
            if component.lower() != component and _COMPONENT.fullmatch(component.lower()):
                raise InvalidReference(f"repository name must be lowercase: {shown(component)}")
            raise InvalidReference(
                f"invalid path component {shown(component)} (lowercase ASCII letters, digits "
                "and single '.', '_', '__' or '-' separators between them)" + ascii_note(component)
            )
    if len(name) > NAME_MAX:
        raise InvalidReference(f"repository name is longer than {NAME_MAX} characters")
    return Reference(domain, path, tag, digest or None)


def rewrite_repository(ref: Reference, registry_host: str) -> str:
    """``ghcr.io/org/app`` -> ``<registry_host>/org/app``: the path is kept verbatim."""
    return f"{registry_host}/{ref.path}"


def normalized(repository: str) -> str:
    """Docker Hub's long forms compare equal to the short ones."""
    for prefix in (
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
        "index.docker.io/",
    ):
        if repository.startswith(prefix):
            return repository[len(prefix) :]
    return repository
