"""``${VAR}`` expansion: memoized, without recursion, bounded, cycles named."""

from __future__ import annotations

import time

import pytest

from hookpkg import bounds
from hookpkg.vars import Vars, has_command, has_expression
from hookpkg.yamlpos import load


def make(text: str, env: dict[str, str] | None = None) -> Vars:
    root, _ = load(text, "v.yaml")
    assert root is not None
    return Vars(root.get("vars"), env or {})


@pytest.mark.parametrize(
    ("vars_text", "expr", "value", "complete"),
    [
        ("A: a", "${A}", "a", True),
        ("A: ${B}-${B}\n  B: b", "x${A}y", "xb-by", True),
        ("A: {value: '${B}'}\n  B: {default: d}", "${A}", "d", True),
        ("A: ${MISSING}", "${A}", "${MISSING}", False),
        ("A: {command: echo}", "${A}", "${A}", False),
        ("A: {command: echo}", "${A:-fallback}", "fallback", True),
        ("A: $(date)", "${A}", "$(date)", False),
        ("A: 1", "${UNSET:-5000}", "5000", True),
        ("A: true", "${A}", "true", True),
    ],
)
def test_resolve(vars_text: str, expr: str, value: str, complete: bool) -> None:
    r = make(f"vars:\n  {vars_text}\n").resolve(expr)
    assert (r.value, r.complete, r.error) == (value, complete, None)


def test_environment_and_fixed_values() -> None:
    v = make(
        "vars:\n  A: fixed\n  B: {default: d}\n  C: {source: env}\n",
        {"A": "env", "B": "e", "C": "c"},
    )
    assert v.resolve("${A} ${B} ${C}").value == "fixed e c"


@pytest.mark.parametrize(
    ("vars_text", "cycle"),
    [
        ("A: ${A}", ("A", "A")),
        ("A: x${B}\n  B: ${A}y", ("A", "B", "A")),
        ("A: ${B}\n  B: ${C}\n  C: ${D}\n  D: ${B}", ("B", "C", "D", "B")),
        ("A: {value: '${A}'}", ("A", "A")),
        ("A: {default: '${A}'}", ("A", "A")),
    ],
)
def test_cycles_are_errors_naming_the_cycle(vars_text: str, cycle: tuple[str, ...]) -> None:
    v = make(f"vars:\n  {vars_text}\n")
    r = v.resolve("port ${A}")
    assert not r.complete
    assert r.error == "variable cycle " + " -> ".join(cycle)
    assert [name for name, _ in v.problems()] == [cycle[0]]


def test_cycle_through_the_environment() -> None:
    v = make("vars:\n  A: ${B}\n", {"B": "${A}"})
    assert v.resolve("${A}").error == "variable cycle A -> B -> A"


def test_exponential_expansion_is_bounded() -> None:
    chain = "".join(
        f"  V{i}: ${{V{i + 1}}}${{V{i + 1}}}${{V{i + 1}}}${{V{i + 1}}}\n" for i in range(60)
    )
    v = make("vars:\n" + chain + "  V60: x\n")
    start = time.perf_counter()
    r = v.resolve("${V0}")
    assert time.perf_counter() - start < 2  # a bound, not a benchmark: it used to take 2.3 GB
    assert r.error == f"expands past {bounds.MAX_VAR_LENGTH:,} characters (the limit)"
    assert [name for name, _ in v.problems()] == ["V51"]  # 4**9 = 262,144 characters


def test_total_expansion_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hookpkg.vars.MAX_VAR_TOTAL", 10_000)
    v = make("vars:\n  A: " + "x" * 4000 + "\n")
    assert v.resolve("${A}").error is None
    assert v.resolve("${A}").error is None
    assert "in all" in (v.resolve("${A}").error or "")


def test_a_long_chain_costs_no_recursion() -> None:
    chain = "".join(f"  V{i}: ${{V{i + 1}}}\n" for i in range(5000))
    v = make("vars:\n" + chain + "  V5000: end\n")
    assert v.resolve("${V0}").value == "end"


@pytest.mark.parametrize(
    "text",
    [
        "${" * 100_000,
        "${a:-" * 100_000,
        "$(" * 100_000,
        "$($(" * 50_000 + "\n" + "$(x" * 50_000,
        "${a:-${a:-" * 50_000 + "}",
        "$$(" * 300_000,  # escapes: each one is skipped, the line is not rescanned
        "$" * 200_000 + "{a",
    ],
)
def test_expression_scanning_is_linear(text: str) -> None:
    v = make("vars:\n  a: 1\n")
    start = time.perf_counter()
    has_expression(text)
    v.resolve(text)
    assert time.perf_counter() - start < 2  # quadratic scans took minutes


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("$(cmd)", True),
        ("a $(x) b", True),
        ("$()", False),
        ("$())", True),
        ("$(x\n)", False),
        ("$$(x)", False),  # DevSpace's escape: the literal $(x)
        ("a $$(x) $(y)", True),
        ("$$$(x)", False),
        ("(x)$(", False),
    ],
)
def test_has_command(text: str, found: bool) -> None:
    assert has_command(text) is found
