"""The bundled closed schema for ``localRegistry``, applied to positioned nodes.

Why not ``jsonschema`` at commit time: importing it costs ~140 ms here, more
than the whole rest of ``devreg check`` (the hook runs on every commit, and
its budget is half of ``check-jsonschema``'s run time). The schema uses a small
subset of JSON Schema (type, properties, additionalProperties, anyOf, $ref,
minimum/maximum, minLength/maxLength, pattern), which this module interprets
directly on :class:`~hookpkg.yamlpos.Node` so every error keeps its line and
column. ``tests/hookpkg/schema_test.py`` checks the schema against its
metaschema and checks that this interpreter and ``jsonschema`` agree on
random documents.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any, NamedTuple

from hookpkg.errors import ascii_note, shown
from hookpkg.yamlpos import Node, join

SCHEMA_RESOURCE = "schemas/local-registry.schema.json"


class SchemaError(NamedTuple):
    node: Node  # the value, or the key of an unknown key
    path: str
    message: str


@functools.cache
def local_registry_schema() -> dict[str, Any]:
    text = resources.files("hookpkg").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _pattern(p: str) -> re.Pattern[str]:
    r"""A JSON Schema ``pattern`` (ECMA-262) as Python means it.

    Two differences matter here: ECMA's ``$`` (without the ``m`` flag) matches
    only at the very end, Python's also before a final newline, so
    ``"registry\n"`` would pass ``^[a-z0-9]…$``; and the schema's classes are
    ASCII, while Python's ``\d``/``\w`` take any Unicode digit or letter. So
    ``$`` outside a class becomes ``\Z`` and the pattern is compiled ASCII-only."""
    out: list[str] = []
    in_class = escaped = False
    for ch in p:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "$":
            out.append(r"\Z")
            continue
        out.append(ch)
    return re.compile("".join(out), re.ASCII)


def _type_ok(value: Any, type_name: str) -> bool:
    match type_name:
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "null":
            return value is None
        case "boolean":
            return isinstance(value, bool)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        case "string":
            return isinstance(value, str)
    return False


class Validator:
    def __init__(self, root: dict[str, Any], *, literal: bool = False) -> None:
        """``literal``: the value is final (its variables filled in), so an
        expression branch (``x-expression``) does not take it: a ``${X}`` that
        DevSpace's escape left behind is text, not a variable."""
        self.root = root
        self.literal = literal

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            ref = schema["$ref"]
            assert ref.startswith("#/"), ref
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part]
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema

    def expected(self, schema: dict[str, Any]) -> str:
        schema = self.resolve(schema)
        if "x-expected" in schema:
            return str(schema["x-expected"])
        types = schema.get("type", [])
        return " or ".join([types] if isinstance(types, str) else types) or "something else"

    def errors(
        self, node: Node, schema: dict[str, Any], path: str, expected: str | None = None
    ) -> Iterator[SchemaError]:
        """``expected`` is what the enclosing ``anyOf`` says it wants: a branch
        without an ``x-expected`` of its own speaks with it (so a port out of
        range says which range)."""
        schema = self.resolve(schema)
        if "x-expected" in schema or expected is None:
            expected = self.expected(schema)
        value = node.value
        if "anyOf" in schema:
            branches = [self.resolve(b) for b in schema["anyOf"]]
            if self.literal:
                branches = [b for b in branches if not b.get("x-expression")]
            results = [list(self.errors(node, b, path, expected)) for b in branches]
            if any(not r for r in results):
                return
            # Report the failure of the branch whose type fits (70000 for a
            # port is out of range, not "not an expression"); else say what fits.
            fitting = [
                r
                for b, r in zip(branches, results, strict=True)
                if self._types_fit(value, b) and not b.get("x-expression")
            ]
            if len(fitting) == 1:
                yield from fitting[0]
            else:
                yield SchemaError(node, path, f"expected {expected}, got {node.kind_name()}")
            return
        types = schema.get("type")
        if types is not None:
            names = [types] if isinstance(types, str) else types
            if not any(_type_ok(value, t) for t in names):
                yield SchemaError(node, path, f"expected {expected}, got {node.kind_name()}")
                return
        if isinstance(value, dict):
            yield from self._object(node, schema, path)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and (
            value < schema.get("minimum", value) or value > schema.get("maximum", value)
        ):
            yield SchemaError(node, path, f"{value} is out of range: expected {expected}")
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                yield SchemaError(node, path, f"expected {expected}, got an empty string")
            elif "maxLength" in schema and len(value) > schema["maxLength"]:
                yield SchemaError(
                    node,
                    path,
                    f"{shown(value)} has {len(value):,} characters: expected {expected}",
                )
            elif "pattern" in schema and not _pattern(schema["pattern"]).search(value):
                yield SchemaError(
                    node, path, f"{shown(value)} is not {expected}{ascii_note(value)}"
                )

    def _types_fit(self, value: Any, schema: dict[str, Any]) -> bool:
        types = schema.get("type")
        if types is None:
            return True
        names = [types] if isinstance(types, str) else types
        return any(_type_ok(value, t) for t in names)

    def _object(self, node: Node, schema: dict[str, Any], path: str) -> Iterator[SchemaError]:
        props: dict[str, Any] = schema.get("properties", {})
        for key, child in node.value.items():
            child_path = join(path, key)
            if key in props:
                yield from self.errors(child, props[key], child_path)
            elif schema.get("additionalProperties") is False:
                key_node = node.keys.get(key, child)
                yield SchemaError(key_node, child_path, unknown_key_message(key, props))


def unknown_key_message(key: str, known: Any) -> str:
    names = sorted(known)
    lowered = {n.lower(): n for n in names}
    guess = lowered.get(key.lower().replace("_", "").replace("-", ""))
    if guess is None:
        close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
        guess = lowered[close[0]] if close else None
    hint = f"; did you mean {guess!r}?" if guess else ""
    return f"unknown key {key!r}{hint} (allowed: {', '.join(names)})"


def validate_local_registry(node: Node, path: str = "localRegistry") -> list[SchemaError]:
    """Structural errors of a ``localRegistry`` node against the bundled schema."""
    schema = local_registry_schema()
    return list(Validator(schema).errors(node, schema, path))


def property_schema(*keys: str) -> dict[str, Any]:
    """The subschema of ``localRegistry.<keys…>`` (used to re-check resolved values)."""
    root = local_registry_schema()
    v = Validator(root)
    schema: dict[str, Any] = root
    for key in keys:
        schema = v.resolve(schema)["properties"][key]
    return schema


def validate_value(
    node: Node, schema: dict[str, Any], path: str, *, literal: bool = False
) -> list[SchemaError]:
    """Errors of one value against a subschema (``literal``: see :class:`Validator`)."""
    return list(Validator(local_registry_schema(), literal=literal).errors(node, schema, path))
