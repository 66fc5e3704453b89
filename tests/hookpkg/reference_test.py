"""The reference grammar and the rewrite table of SPEC §4."""

from __future__ import annotations

import pytest

from hookpkg.config import split_tag
from hookpkg.reference import InvalidReference, normalized, parse_reference, rewrite_repository

DIGEST = "sha256:" + "0" * 64

REWRITES = [
    pytest.param("org/project/image", "localhost:31234/org/project/image", None, id="hub-path"),
    pytest.param("ghcr.io/org/project/image", "localhost:31234/org/project/image", None, id="ghcr"),
    pytest.param("myregistry:5000/a/b", "localhost:31234/a/b", None, id="host-port"),
    pytest.param(
        "docker.io/library/nginx", "localhost:31234/library/nginx", None, id="docker-io-library"
    ),
    pytest.param("nginx", "localhost:31234/nginx", None, id="bare"),
    pytest.param("org/app:1.2", "localhost:31234/org/app", "1.2", id="tag-stays-tag"),
    pytest.param("localhost/app", "localhost:31234/app", None, id="localhost-host"),
    pytest.param("localhost:5000/a/b:dev", "localhost:31234/a/b", "dev", id="localhost-port"),
    pytest.param("192.168.208.12:5000/devspace", "localhost:31234/devspace", None, id="ipv4-host"),
    pytest.param("[::1]:5000/app", "localhost:31234/app", None, id="ipv6-host"),
    pytest.param(
        "319923562419.dkr.ecr.ap-southeast-2.amazonaws.com/lumina-images/frontend",
        "localhost:31234/lumina-images/frontend",
        None,
        id="ecr",
    ),
    pytest.param(
        "802dot1q/cedge-api:v0.1.10",
        "localhost:31234/802dot1q/cedge-api",
        "v0.1.10",
        id="digit-namespace",
    ),
]


@pytest.mark.parametrize(("image", "rewritten", "tag"), REWRITES)
def test_rewrite(image: str, rewritten: str, tag: str | None) -> None:
    ref = parse_reference(image)
    assert rewrite_repository(ref, "localhost:31234") == rewritten
    assert ref.tag == tag
    assert split_tag(image) == (ref.repository, tag)


INVALID = [
    pytest.param("", "empty", id="empty"),
    pytest.param("Org/app", "lowercase", id="upper"),
    pytest.param("org//app", "empty path component", id="double-slash"),
    pytest.param("org/app/", "empty path component", id="trailing-slash"),
    pytest.param("org/app:", "invalid tag", id="empty-tag"),
    pytest.param("org/app:.x", "invalid tag", id="tag-dot"),
    pytest.param("org/a..b", "invalid path component", id="double-dot"),
    pytest.param("org/a b", "invalid path component", id="space"),
    pytest.param(" org/app", "whitespace", id="leading-space"),
    pytest.param("org/app\n", "whitespace", id="trailing-newline"),
    pytest.param("org/app:1\n", "whitespace", id="trailing-newline-after-tag"),
    pytest.param("org/app\u00a0", "whitespace", id="trailing-nbsp"),
    # ASCII grammar (distribution's reference package, Go's ASCII classes):
    # Unicode digits and letters, and look-alikes, are refused and named.
    pytest.param(
        "org/app:v\u0661",
        "U\\+0661 \\(ARABIC-INDIC DIGIT ONE\\), not ASCII",
        id="tag-arabic-indic-digit",
    ),
    pytest.param("org/app:\u0967\u0968", "DEVANAGARI DIGIT ONE", id="tag-devanagari-digits"),
    pytest.param("org/app:\uff11", "FULLWIDTH DIGIT ONE", id="tag-fullwidth-digit"),
    pytest.param("org/app:caf\u00e9", "LATIN SMALL LETTER E WITH ACUTE", id="tag-unicode-letter"),
    pytest.param("org/\u0430pp", "CYRILLIC SMALL LETTER A", id="path-cyrillic-a"),
    pytest.param("org/app\u0660", "ARABIC-INDIC DIGIT ZERO", id="path-arabic-indic-digit"),
    pytest.param(
        "r\u0435gistry.io/app",
        "invalid registry host .*CYRILLIC SMALL LETTER IE",
        id="host-confusable",
    ),
    pytest.param(
        "registry.io:\u0665\u0660\u0660\u0660/app",
        "invalid registry host",
        id="host-port-unicode-digits",
    ),
    pytest.param("org/app@sha256:" + "\u0660" * 64, "invalid digest", id="digest-unicode-digits"),
    pytest.param("org/app@sha256:xyz", "invalid digest", id="bad-digest"),
    pytest.param("bad_host.io:x/app", "invalid registry host", id="bad-port"),
    pytest.param("a/" + "b" * 300, "longer than 255", id="too-long"),
]


@pytest.mark.parametrize(("image", "message"), INVALID)
def test_invalid(image: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message):
        parse_reference(image)


def test_digest() -> None:
    ref = parse_reference(f"gcr.io/x/y@{DIGEST}")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("gcr.io", "x/y", None, DIGEST)
    assert str(ref) == f"gcr.io/x/y@{DIGEST}"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("docker.io/library/nginx", "nginx"),
        ("docker.io/org/app", "org/app"),
        ("index.docker.io/org/x", "org/x"),
    ],
)
def test_normalized(a: str, b: str) -> None:
    assert normalized(a) == normalized(b)
