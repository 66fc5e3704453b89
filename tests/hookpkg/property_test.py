"""Random YAML and random ``localRegistry`` mappings: never exit 3, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.cli.main import main

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "${X}",
            "$(cmd)",
            "yes",
            "off",
            "5Gi",
            "ghcr.io/a/b:1",
            "A/B",
            "a@sha256:" + "0" * 64,
            "localRegistry",
            "image(app)",
            "${runtime.images.app.image}",
        ]
    ),
)
tree = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
lr_keys = st.sampled_from(
    [
        "enabled",
        "localbuild",
        "namespace",
        "name",
        "image",
        "buildKitImage",
        "port",
        "persistence",
        "size",
        "locaBuild",
    ]
)
local_registry = st.one_of(tree, st.dictionaries(lr_keys, tree, max_size=6))
top = st.fixed_dictionaries(
    {"localRegistry": local_registry},
    optional={
        "version": st.sampled_from(["v2beta1", "v1beta11", 3]),
        "images": tree,
        "vars": tree,
        "dev": tree,
        "deployments": tree,
        "hooks": tree,
        "imports": tree,
        "profiles": tree,
    },
)

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    f = tmp_path / "devspace.yaml"
    f.write_bytes(text.encode("utf-8", "replace"))
    rc = main(["check", str(f)])
    out, err = capsys.readouterr()
    assert rc in (0, 1, 2), out + err
    assert "Traceback" not in out + err


@SETTINGS
@given(top)
def test_random_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: dict[str, Any]
) -> None:
    check(tmp_path, capsys, yaml.safe_dump(doc, allow_unicode=True))


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("ab: -\n\t'\"[]{}&*!|>%@`#,?$")), max_size=80))
def test_random_yaml_text(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    check(tmp_path, capsys, "localRegistry:\n" + text)
