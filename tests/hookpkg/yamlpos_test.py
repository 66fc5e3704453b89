"""YAML with positions: bounded on hostile input, every failure a positioned diagnostic."""

from __future__ import annotations

import time

import pytest

from hookpkg import bounds, yamlpos
from hookpkg.yamlpos import YamlError, load, load_all


def laughs(levels: int = 9, width: int = 9, indent: str = "") -> str:
    """A few hundred bytes that expand to width**levels nodes."""
    out = f"{indent}l0: &l0 [x]\n"
    for i in range(1, levels + 1):
        out += f"{indent}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]\n"
    return out


def error_of(text: str) -> tuple[int, int, str]:
    with pytest.raises(YamlError) as e:
        load(text, "f.yaml")
    d = e.value.diagnostic
    assert d.severity == "error"
    assert "\n" not in d.message
    return d.line, d.col, d.message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(laughs() + "localRegistry: {name: *l9}\n", id="outside-localRegistry"),
        pytest.param(
            "localRegistry:\n  persistence:\n" + laughs(indent="    "), id="inside-localRegistry"
        ),
        pytest.param("images:\n  app:\n" + laughs(indent="    "), id="under-images"),
        pytest.param(
            "deployments:\n  d:\n    helm:\n      values:\n" + laughs(indent="        "),
            id="helm-values",
        ),
        pytest.param(laughs(levels=30, width=2), id="doubling"),
    ],
)
def test_billion_laughs_stops_at_the_alias(text: str) -> None:
    assert len(text) < 1200
    start = time.perf_counter()
    line, col, message = error_of(text)
    assert time.perf_counter() - start < 2  # a bound, not a benchmark: it used to hang
    assert f"past {bounds.MAX_ALIAS_NODES:,} nodes reached through aliases" in message
    # the alias that passes the bound, where it is written
    assert text.splitlines()[line - 1][col - 1] == "*"


def test_aliases_within_the_bound_are_shared_not_copied() -> None:
    root, diags = load(laughs(levels=5), "f.yaml")  # 9**5 = 59,049 nodes expanded
    assert root is not None and diags == []
    l5 = root.value["l5"]
    assert l5.value[0] is l5.value[8]  # the same node, reached twice
    assert sum(1 for _ in root.walk()) < 100  # one place in the file, walked once
    assert len(root.plain()["l5"]) == 9


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        pytest.param("a: &a [*a]\n", (1, 8), "recursive alias", id="sequence"),
        pytest.param("a: &a {b: *a}\n", (1, 11), "recursive alias", id="mapping"),
        pytest.param("a: &a {<<: *a}\n", (1, 12), "recursive alias", id="merge"),
        pytest.param("a: &a [[[*a]]]\n", (1, 10), "recursive alias", id="nested"),
        pytest.param("a: *nothing\n", (1, 4), "undefined alias 'nothing'", id="undefined"),
        pytest.param("a: &x 1\nb: &x 2\n", (2, 4), "duplicate anchor 'x'", id="duplicate-anchor"),
    ],
)
def test_alias_errors(text: str, where: tuple[int, int], words: str) -> None:
    line, col, message = error_of(text)
    assert (line, col) == where
    assert words in message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param(
            "x: " + "[" * 500 + "]" * 500 + "\n", (1, 3 + bounds.MAX_DEPTH), id="flow-sequences"
        ),
        pytest.param(
            "x: " + "{a: " * 450 + "1" + "}" * 450 + "\n",
            (1, 4 + 4 * (bounds.MAX_DEPTH - 1)),
            id="flow-mappings",
        ),
        pytest.param(
            "deployments:\n  d:\n    helm:\n      values:\n"
            + "".join("  " * (i + 4) + f"k{i}:\n" for i in range(450)),
            None,
            id="helm-values-block",
        ),
        pytest.param(
            "".join(" " * i + "- \n" for i in range(0, 1000, 2)), None, id="block-sequences"
        ),
    ],
)
def test_nesting_depth_is_a_diagnostic(text: str, where: tuple[int, int] | None) -> None:
    line, col, message = error_of(text)
    assert f"nested deeper than {bounds.MAX_DEPTH} levels" in message
    if where is not None:
        assert (line, col) == where


def test_nesting_within_the_bound_reads_without_recursion() -> None:
    depth = bounds.MAX_DEPTH - 1
    root, _ = load("x: " + "[" * depth + "1" + "]" * depth + "\n", "f.yaml")
    assert root is not None
    node = root.value["x"]
    for _ in range(depth - 1):
        node = node.value[0]
    assert node.value[0].value == 1
    assert len(list(root.walk())) == depth + 2
    plain = root.plain()["x"]
    for _ in range(depth - 1):
        plain = plain[0]
    assert plain == [1]


def test_node_count_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlpos, "MAX_NODES", 1000)
    load("x: [" + ",".join(["1"] * 997) + "]\n", "f.yaml")  # the root, the key, the list, 997
    line, col, message = error_of("x: [" + ",".join(["1"] * 998) + "]\n")
    assert "more than 1,000 YAML nodes" in message
    assert (line, col) == (1, 5 + 2 * 997)


SCALARS = [
    pytest.param("x: !!int abc\n", "error", "'abc' cannot be read as !!int", id="int"),
    pytest.param("x: !!float abc\n", "error", "'abc' cannot be read as !!float", id="float"),
    pytest.param("x: !!bool maybe\n", "error", "'maybe' cannot be read as !!bool", id="bool"),
    pytest.param(
        "x: !!timestamp 2024-02-30\n",
        "error",
        "cannot be read as !!timestamp",
        id="timestamp-explicit",
    ),
    pytest.param(
        "x: !!timestamp abc\n", "error", "cannot be read as !!timestamp", id="timestamp-not-a-date"
    ),
    pytest.param("x: !!binary 'a'\n", "error", "cannot be read as !!binary", id="binary"),
    pytest.param("x: !!map abc\n", "error", "cannot be read as !!map", id="map-tag-on-scalar"),
    pytest.param(
        "x: !!int \u0663\u0660\u0660\u0660\n",
        "error",
        "cannot be read as !!int",
        id="int-arabic-indic-digits",
    ),
    pytest.param(
        "x: !!float \uff11.5\n", "error", "cannot be read as !!float", id="float-fullwidth-digit"
    ),
    pytest.param(
        "x: 2024-02-30\n",
        "warning",
        "not a valid date; it is read as a string",
        id="timestamp-implicit",
    ),
    pytest.param("x: " + "9" * 5000 + "\n", "warning", "cannot be read as one", id="int-too-long"),
]


@pytest.mark.parametrize(("text", "severity", "words"), SCALARS)
def test_scalars_that_do_not_read_as_their_tag(text: str, severity: str, words: str) -> None:
    root, diags = load(text, "f.yaml")
    assert root is not None
    assert [(d.line, d.col, d.severity, d.path) for d in diags] == [(1, 4, severity, "x")]
    assert words in diags[0].message
    node = root.value["x"]
    assert isinstance(node.value, str)  # kept as the text, so checks report a string


def test_scalars_that_read() -> None:
    root, diags = load(
        "a: !!int '42'\nb: !!float 1.5\nc: !!bool yes\nd: 2024-02-29\ne: !Ref x\nf: !!str 5\n"
        "g: 0x10\nh: ~\n",
        "f.yaml",
    )
    assert diags == []
    assert root is not None
    plain = root.plain()
    assert (plain["a"], plain["b"], plain["c"], plain["e"], plain["f"], plain["g"], plain["h"]) == (
        42,
        1.5,
        True,
        "x",
        "5",
        16,
        None,
    )
    assert str(plain["d"]) == "2024-02-29"


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        pytest.param(
            "version: v2beta1\nlocalRegistry:\n  name: reg\x00istry\n",
            (3, 12),
            "a NUL byte",
            id="nul",
        ),
        pytest.param("a: 1\nb: \x07\n", (2, 4), "U+0007", id="bell"),
        pytest.param("a: '\x1b[31m'\n", (1, 5), "U+001B (ESC)", id="escape"),
        pytest.param("a: 1\r\nb: x\x7f\r\n", (2, 5), "U+007F (DEL)", id="del-crlf"),
        pytest.param("a: \x85\x9b\n", (1, 5), "U+009B", id="c1-control"),
        pytest.param("# \ufffe\n", (1, 3), "U+FFFE", id="noncharacter"),
    ],
)
def test_unprintable_characters_on_their_line(text: str, where: tuple[int, int], what: str) -> None:
    line, col, message = error_of(text)
    assert (line, col) == where
    assert what in message
    assert all(ord(c) >= 0x20 for c in message)


def test_one_document_only() -> None:
    line, col, message = error_of("a: 1\n---\nb: 2\n")
    assert (line, col) == (2, 1)
    assert "single YAML document" in message
    assert [d.value for d in load_all("a: 1\n---\nb: 2\n---\n", "m.yaml")] != []


def test_merge_keys_and_duplicates_keep_working() -> None:
    root, diags = load("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n  z: 4\n  z: 5\n", "f.yaml")
    assert root is not None
    assert root.plain()["m"] == {"x": 1, "y": 3, "z": 5}
    assert [(d.line, d.col, d.path) for d in diags] == [(6, 3, "m.z")]
    assert "duplicate key 'z'" in diags[0].message
