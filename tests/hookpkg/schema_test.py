"""The bundled schema: valid against its metaschema, closed, and interpreted
by hookpkg.schema exactly as the jsonschema library reads it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import regress
from hypothesis import given, settings
from hypothesis import strategies as st

from hookpkg.schema import local_registry_schema, validate_local_registry
from hookpkg.yamlpos import Node, load


def test_schema_is_valid_against_its_metaschema() -> None:
    schema = local_registry_schema()
    jsonschema.validators.validator_for(schema).check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_is_closed() -> None:
    schema = local_registry_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["persistence"]["additionalProperties"] is False


def as_node(value: Any) -> Node:
    import yaml

    root, _ = load(yaml.safe_dump({"x": value}), "t")
    assert root is not None
    node = root.get("x")
    assert node is not None
    return node


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 70000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "",
            "5Gi",
            "1.5Mi",
            "5GB",
            "reg",
            "My_Reg",
            "${X}",
            "$(cmd)",
            "registry:2",
            "a" * 70,
            "-x",
            "reg\n",
            "5Gi\n",
            "\u0665Gi",
            "reg\u0661",
            "${X}\n",
            "$(" + "x" * 5000 + ")",
        ]
    ),
    st.sampled_from([1.0, 5000.0, -0.0, 31234.0]),  # floats a port must not take
    st.text(max_size=8),
)
keys = st.sampled_from(
    [
        "enabled",
        "localbuild",
        "namespace",
        "name",
        "image",
        "buildKitImage",
        "port",
        "persistence",
        "locaBuild",
        "extra",
    ]
)
persistence = st.dictionaries(
    st.sampled_from(["enabled", "size", "storageClassName", "sise"]), scalars, max_size=4
)
documents = st.one_of(
    st.none(),
    scalars,
    st.lists(scalars, max_size=2),
    st.dictionaries(keys, st.one_of(scalars, persistence), max_size=6),
)


def ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """``pattern`` as JSON Schema means it (ECMA-262, as check-jsonschema reads it
    with regress); jsonschema's own uses Python's ``re``, where ``$`` also
    matches before a final newline and ``\\d`` any Unicode digit."""
    if isinstance(instance, str) and regress.Regex(pattern).find(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def yaml_integer(_checker: Any, instance: Any) -> bool:
    """An integer as YAML and DevSpace's Go loader mean it: ``port: 1.0`` is a float,
    which DevSpace refuses for an int field, where JSON Schema calls 1.0 an integer."""
    return isinstance(instance, int) and not isinstance(instance, bool)


EcmaValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"pattern": ecma_pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", yaml_integer),
)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_interpreter_agrees_with_jsonschema(doc: Any) -> None:
    reference = EcmaValidator(local_registry_schema())
    assert (not validate_local_registry(as_node(doc))) == reference.is_valid(doc)


@pytest.mark.parametrize(
    "value",
    [
        "registry\n",
        "reg\n",
        "5Gi\n",
        "\u0665Gi",
        "reg\u0661",
        "r\u0435g",
        "reg ",
        "\nreg",
        "1\u0660Mi",
    ],
)
def test_patterns_are_anchored_and_ascii(value: str) -> None:
    for doc in ({"name": value}, {"namespace": value}, {"persistence": {"size": value}}):
        assert validate_local_registry(as_node(doc)) != []
        assert not EcmaValidator(local_registry_schema()).is_valid(doc)


@pytest.mark.parametrize(
    "doc",
    [{"port": 5000}, {"port": "${P}"}, {"persistence": {"size": 1024}}, None, {"enabled": "$(x)"}],
)
def test_examples_valid_in_both(doc: Any) -> None:
    assert jsonschema.Draft202012Validator(local_registry_schema()).is_valid(doc)
    assert validate_local_registry(as_node(doc)) == []
