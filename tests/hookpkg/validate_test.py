"""Every validation rule of SPEC §1, each with the line and column it reports."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hookpkg.commands.check import check_file
from hookpkg.delivery import Cluster
from hookpkg.errors import Diagnostic

REMOTE = Cluster("remote", "gke_x")


def run(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[Diagnostic]:
    path = tmp_path / "devspace.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    if env:
        import os

        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
    try:
        result = check_file(path, REMOTE, registry="localhost:[NODE_PORT]")
    finally:
        if env:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return result.diagnostics


def only(diags: list[Diagnostic], severity: str) -> list[tuple[int, int, str]]:
    return [(d.line, d.col, d.path) for d in diags if d.severity == severity]


ERRORS = [
    pytest.param(
        "localRegistry: [a, b]\n", (1, 16, "localRegistry"), "must be a mapping", id="list"
    ),
    pytest.param("localRegistry: on\n", (1, 16, "localRegistry"), "must be a mapping", id="scalar"),
    pytest.param(
        "localRegistry:\n  locaBuild: true\n",
        (2, 3, "localRegistry.locaBuild"),
        "did you mean 'localbuild'",
        id="unknown-key-did-you-mean",
    ),
    pytest.param(
        "localRegistry:\n  persistence:\n    sise: 1Gi\n    enabled: true\n",
        (3, 5, "localRegistry.persistence.sise"),
        "did you mean 'size'",
        id="unknown-nested-key",
    ),
    pytest.param(
        "localRegistry:\n  enabled: maybe\n",
        (2, 12, "localRegistry.enabled"),
        "expected true or false, got string 'maybe'",
        id="bool-type",
    ),
    pytest.param(
        "localRegistry:\n  enabled: 'true'\n",
        (2, 12, "localRegistry.enabled"),
        "expected true or false, got string 'true'",
        id="quoted-bool",
    ),
    pytest.param(
        "localRegistry:\n  port: 70000\n",
        (2, 9, "localRegistry.port"),
        "70000 is out of range: expected an integer port 1-65535",
        id="port-high",
    ),
    pytest.param(
        "localRegistry:\n  port: 0\n", (2, 9, "localRegistry.port"), "out of range", id="port-zero"
    ),
    pytest.param(
        "localRegistry:\n  port: true\n",
        (2, 9, "localRegistry.port"),
        "expected an integer port",
        id="port-bool",
    ),
    pytest.param(
        "localRegistry:\n  port: '5000'\n",
        (2, 9, "localRegistry.port"),
        "got string '5000'",
        id="port-string",
    ),
    pytest.param(
        "localRegistry:\n  name: My_Registry\n",
        (2, 9, "localRegistry.name"),
        "DNS-1123",
        id="name-dns",
    ),
    pytest.param(
        "localRegistry:\n  namespace: " + "a" * 64 + "\n",
        (2, 14, "localRegistry.namespace"),
        "64 characters",
        id="namespace-too-long",
    ),
    pytest.param(
        "localRegistry:\n  namespace: -ns\n",
        (2, 14, "localRegistry.namespace"),
        "DNS-1123",
        id="namespace-dash",
    ),
    pytest.param(
        "localRegistry:\n  persistence:\n    enabled: true\n    size: 5GB\n",
        (4, 11, "localRegistry.persistence.size"),
        "Kubernetes quantity",
        id="size-quantity",
    ),
    pytest.param(
        "localRegistry:\n  persistence:\n    enabled: true\n    size: -1\n",
        (4, 11, "localRegistry.persistence.size"),
        "out of range",
        id="size-negative",
    ),
    pytest.param(
        "localRegistry:\n  image: Registry:2\n",
        (2, 10, "localRegistry.image"),
        "lowercase",
        id="image-uppercase",
    ),
    pytest.param(
        "localRegistry:\n  buildKitImage: moby//buildkit\n",
        (2, 18, "localRegistry.buildKitImage"),
        "empty path component",
        id="buildkit-image-empty-component",
    ),
    pytest.param(
        "localRegistry:\n  image: ''\n",
        (2, 10, "localRegistry.image"),
        "non-empty",
        id="image-empty",
    ),
    pytest.param(
        "localRegistry:\n  persistence: yes\n",
        (2, 16, "localRegistry.persistence"),
        "got boolean yes",
        id="persistence-not-mapping",
    ),
    pytest.param(
        "images:\n  app:\n    image: Org/App\n",
        (3, 12, "images.app.image"),
        "lowercase",
        id="images-uppercase",
    ),
    pytest.param(
        "images:\n  app:\n    image: org//app\n",
        (3, 12, "images.app.image"),
        "empty path component",
        id="images-empty-component",
    ),
    pytest.param(
        "images:\n  app:\n    image: org/app!\n",
        (3, 12, "images.app.image"),
        "invalid path component",
        id="images-bad-character",
    ),
    pytest.param(
        "images:\n  app:\n    image: org/app:-bad\n",
        (3, 12, "images.app.image"),
        "invalid tag",
        id="images-bad-tag",
    ),
    pytest.param(
        "images:\n  app:\n    dockerfile: x\n",
        (2, 3, "images.app"),
        "missing required field 'image'",
        id="images-missing-image",
    ),
    pytest.param(
        "images:\n  app: org/app\n",
        (2, 8, "images.app"),
        "expected a mapping",
        id="images-entry-scalar",
    ),
    pytest.param(
        "localRegistry:\n  enabled: true\nimages:\n  app:\n    image: gcr.io/x/y@sha256:"
        + "a" * 64
        + "\n",
        (5, 12, "images.app.image"),
        "digest-pinned",
        id="digest-enabled-true",
    ),
    pytest.param(
        "images:\n  my-app:\n    image: a\n  my_app:\n    image: b\n",
        (4, 3, "images.my_app"),
        "both define the variable RUNTIME_IMAGES_MY_APP",
        id="env-collision",
    ),
    pytest.param(
        "images:\n  app:\n    image: a\n  app_image:\n    image: b\n",
        (4, 3, "images.app_image"),
        "RUNTIME_IMAGES_APP_IMAGE",
        id="env-collision-suffix",
    ),
    pytest.param(
        "images:\n  app:\n    image: a\n    localRegistry:\n      name: r\n",
        (4, 5, "images.app.localRegistry"),
        "belongs at the top level",
        id="misplaced",
    ),
    pytest.param(
        "localRegistry:\n  enabled: true\n  enabled: false\n",
        (3, 3, "localRegistry.enabled"),
        "duplicate key 'enabled' (first defined at line 2)",
        id="duplicate-key",
    ),
    pytest.param(
        "vars:\n  PORT: abc\nlocalRegistry:\n  port: ${PORT}\n",
        (4, 9, "localRegistry.port"),
        "resolves to 'abc'",
        id="var-resolves-to-bad-port",
    ),
    pytest.param(
        "vars:\n  NS: Bad_NS\nlocalRegistry:\n  namespace: ${NS}\n",
        (4, 14, "localRegistry.namespace"),
        "resolves to 'Bad_NS'",
        id="var-resolves-to-bad-namespace",
    ),
    pytest.param(
        "vars:\n  REPO: Bad\nimages:\n  app:\n    image: ${REPO}/app\n",
        (5, 12, "images.app.image"),
        "'Bad/app' (from '${REPO}/app')",
        id="var-resolves-to-bad-image",
    ),
    pytest.param(
        "profiles:\n- name: p\n  merge:\n    localRegistry:\n      prot: 5000\n",
        (5, 7, "profiles[0].merge.localRegistry.prot"),
        "did you mean 'port'",
        id="profile-merge",
    ),
    pytest.param(
        "- a\n- b\n", (1, 1, ""), "must be a mapping at the top level", id="top-level-list"
    ),
    pytest.param(
        "images: [a]\n", (1, 9, "images"), "expected a mapping of images", id="images-list"
    ),
    # ASCII grammar, matched to the true end of the value (issue 15): a final
    # newline, a Unicode digit or a look-alike letter never passes.
    pytest.param(
        'localRegistry:\n  name: "registry\\n"\n',
        (2, 9, "localRegistry.name"),
        "'registry\\n' is not a DNS-1123 label",
        id="name-trailing-newline",
    ),
    pytest.param(
        'localRegistry:\n  namespace: "dev\\n"\n',
        (2, 14, "localRegistry.namespace"),
        "is not a DNS-1123 label",
        id="namespace-trailing-newline",
    ),
    pytest.param(
        "localRegistry:\n  namespace: 'dev '\n",
        (2, 14, "localRegistry.namespace"),
        "is not a DNS-1123 label",
        id="namespace-trailing-space",
    ),
    pytest.param(
        "localRegistry:\n  name: registry\u0661\n",
        (2, 9, "localRegistry.name"),
        "U+0661 (ARABIC-INDIC DIGIT ONE), not ASCII",
        id="name-arabic-indic-digit",
    ),
    pytest.param(
        "localRegistry:\n  name: reg\u0456stry\n",
        (2, 9, "localRegistry.name"),
        "CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I",
        id="name-confusable",
    ),
    pytest.param(
        "localRegistry:\n  name: \u0433\u0435\u0433\n",
        (2, 9, "localRegistry.name"),
        "not ASCII",
        id="name-cyrillic",
    ),
    pytest.param(
        'localRegistry:\n  persistence:\n    enabled: true\n    size: "5Gi\\n"\n',
        (4, 11, "localRegistry.persistence.size"),
        "'5Gi\\n' is not a Kubernetes quantity",
        id="size-trailing-newline",
    ),
    pytest.param(
        "localRegistry:\n  persistence:\n    enabled: true\n    size: \u0665Gi\n",
        (4, 11, "localRegistry.persistence.size"),
        "U+0665 (ARABIC-INDIC DIGIT FIVE)",
        id="size-arabic-indic-digit",
    ),
    pytest.param(
        "localRegistry:\n  persistence:\n    enabled: true\n    size: 5\uff27i\n",
        (4, 11, "localRegistry.persistence.size"),
        "FULLWIDTH LATIN CAPITAL LETTER G",
        id="size-fullwidth-unit",
    ),
    pytest.param(
        "localRegistry:\n  port: 5\u0660\u0660\u0660\n",
        (2, 9, "localRegistry.port"),
        "expected an integer port 1-65535",
        id="port-arabic-indic-digits",
    ),
    pytest.param(
        "vars:\n  P: \u0665\u0660\u0660\u0660\nlocalRegistry:\n  port: ${P}\n",
        (4, 9, "localRegistry.port"),
        "resolves to '\u0665\u0660\u0660\u0660'",
        id="port-var-unicode-digits",
    ),
    pytest.param(
        "localRegistry:\n  port: 65536\n",
        (2, 9, "localRegistry.port"),
        "65536 is out of range: expected an integer port 1-65535",
        id="port-range-stated",
    ),
    pytest.param(
        "vars:\n  P: '0'\nlocalRegistry:\n  port: ${P}\n",
        (4, 9, "localRegistry.port"),
        "0 is out of range: expected an integer port 1-65535",
        id="port-range-stated-resolved",
    ),
    pytest.param(
        "images:\n  app:\n    image: ghcr.io/a/b:v\u0661\n",
        (3, 12, "images.app.image"),
        "U+0661 (ARABIC-INDIC DIGIT ONE), not ASCII",
        id="images-tag-arabic-indic-digit",
    ),
    pytest.param(
        'images:\n  app:\n    image: "ghcr.io/a/b\\n"\n',
        (3, 12, "images.app.image"),
        "whitespace",
        id="images-trailing-newline",
    ),
    pytest.param(
        "localRegistry:\n  image: registry:2\u0660\n",
        (2, 10, "localRegistry.image"),
        "invalid tag",
        id="image-tag-unicode-digit",
    ),
    # variables: a cycle is an error naming it, never a silent default
    pytest.param(
        "vars:\n  A: ${A}\n", (2, 6, "vars.A"), "variable cycle A -> A", id="var-self-cycle"
    ),
    pytest.param(
        "vars:\n  A: x${B}\n  B:\n    value: ${C}\n  C: ${A}\n",
        (2, 6, "vars.A"),
        "variable cycle A -> B -> C -> A",
        id="var-cycle",
    ),
    pytest.param(
        "vars:\n- name: A\n  value: ${A}\n",
        (2, 3, "vars.A"),
        "variable cycle A -> A",
        id="var-cycle-list-form",
    ),
    pytest.param(
        "vars:\n"
        + "".join(f"  V{i}: ${{V{i + 1}}}${{V{i + 1}}}\n" for i in range(30))
        + "  V30: '0123456789'\n",
        (19, 8, "vars.V17"),
        "${V17} expands past 65,536 characters",
        id="var-doubling",
    ),
]


@pytest.mark.parametrize(("text", "where", "message"), ERRORS)
def test_errors(tmp_path: Path, text: str, where: tuple[int, int, str], message: str) -> None:
    diags = run(tmp_path, text)
    errors = [d for d in diags if d.severity == "error"]
    assert [(d.line, d.col, d.path) for d in errors] == [where], [d.format() for d in diags]
    assert message in errors[0].message


SYNTAX = [
    pytest.param("localRegistry:\n\tenabled: true\n", (2, 1), "tab character", id="tab"),
    pytest.param(
        "localRegistry:\n  enabled: true\n    port: 1\n", (3, 9), "invalid YAML", id="bad-indent"
    ),
    pytest.param("images: {a: [}\n", (1, 14), "invalid YAML", id="flow"),
    pytest.param("a: 1\n---\nb: 2\n", (2, 1), "single YAML document", id="two-documents"),
    pytest.param("key: 'unterminated\n", (2, 1), "invalid YAML", id="unterminated-quote"),
]


@pytest.mark.parametrize(("text", "where", "message"), SYNTAX)
def test_yaml_syntax(tmp_path: Path, text: str, where: tuple[int, int], message: str) -> None:
    diags = run(tmp_path, text)
    assert [(d.line, d.col) for d in diags] == [where], [d.format() for d in diags]
    assert message in diags[0].message
    assert diags[0].severity == "error"


WARNINGS = [
    pytest.param(
        "localRegistry:\n  enabled: yes\n",
        (2, 12, "localRegistry.enabled"),
        "write true",
        id="yaml11-yes",
    ),
    pytest.param(
        "localRegistry:\n  localbuild: off\n",
        (2, 15, "localRegistry.localbuild"),
        "write false",
        id="yaml11-off",
    ),
    pytest.param(
        "localRegistry:\n  persistence:\n    size: 1Gi\n",
        (3, 5, "localRegistry.persistence.size"),
        "no effect while persistence.enabled is not true",
        id="persistence-disabled",
    ),
    pytest.param(
        "localRegistry:\n  image: my/registry:1\n  port: 6000\n",
        (3, 9, "localRegistry.port"),
        "may ignore it",
        id="port-custom-image",
    ),
    pytest.param(
        "images:\n  app:\n    image: gcr.io/x/y@sha256:" + "a" * 64 + "\n",
        (3, 12, "images.app.image"),
        "only a problem if the push is refused",
        id="digest-enabled-unset",
    ),
    pytest.param(
        "localRegistry:\n  enabled: true\nimages:\n  app:\n    image: a\n    kaniko: {}\n",
        (4, 3, "images.app"),
        "built with kaniko",
        id="enabled-with-kaniko",
    ),
    pytest.param(
        "localRegistry:\n  enabled: true\nimages:\n  app:\n    image: a\n    buildKit:\n      inCluster: {}\n",
        (4, 3, "images.app"),
        "buildKit.inCluster",
        id="enabled-with-incluster",
    ),
    pytest.param(
        "localRegistry:\n  enabled: true\nimages:\n  app:\n    image: a\n    custom:\n      command: x\n",
        (4, 3, "images.app"),
        "custom build",
        id="enabled-with-custom",
    ),
    pytest.param(
        "imports:\n- path: ../../outside.yaml\n",
        (2, 9, "imports[0].path"),
        "not checked",
        id="import-unreadable",
    ),
]


@pytest.mark.parametrize(("text", "where", "message"), WARNINGS)
def test_warnings(tmp_path: Path, text: str, where: tuple[int, int, str], message: str) -> None:
    diags = run(tmp_path, text)
    assert only(diags, "error") == [], [d.format() for d in diags]
    warnings = [d for d in diags if d.severity == "warning"]
    assert [(d.line, d.col, d.path) for d in warnings] == [where], [d.format() for d in diags]
    assert message in warnings[0].message


CLEAN = [
    pytest.param("localRegistry:\n", id="null-means-defaults"),
    pytest.param("version: v2beta1\nname: x\n", id="no-local-registry"),
    pytest.param(
        "localRegistry:\n  enabled: true\n  localbuild: true\n  namespace: dev\n  name: reg\n"
        "  image: registry:2.8.3\n  buildKitImage: moby/buildkit:v0.12.0\n  port: 5000\n"
        "  persistence:\n    enabled: true\n    size: 10Gi\n    storageClassName: standard\n",
        id="every-field",
    ),
    pytest.param(
        "localRegistry:\n  persistence:\n    enabled: true\n    size: 1073741824\n",
        id="size-integer",
    ),
    pytest.param(
        "localRegistry:\n  enabled: false\nimages:\n  app:\n    image: gcr.io/x/y@sha256:"
        + "a" * 64
        + "\n",
        id="digest-enabled-false",
    ),
    pytest.param(
        "localRegistry:\n  enabled: ${USE_REGISTRY}\n  port: $(echo 5000)\n",
        id="unresolved-expressions",
    ),
    pytest.param("vars:\n  P: 6000\nlocalRegistry:\n  port: ${P}\n", id="var-resolved-port"),
    pytest.param("images:\n  app:\n    image: '[::1]:5000/app'\n", id="ipv6-registry"),
    pytest.param(
        "images:\n  app:\n    image: registry.example.com:5000/a/b:1.0\n", id="host-port-tag"
    ),
    pytest.param("base: &b\n  image: a\nimages:\n  app:\n    <<: *b\n", id="merge-key"),
    pytest.param(
        "deployments:\n  x:\n    helm:\n      values:\n        localRegistry: {anything: 1}\n",
        id="localRegistry-in-helm-values-is-user-data",
    ),
]


@pytest.mark.parametrize("text", CLEAN)
def test_clean(tmp_path: Path, text: str) -> None:
    diags = run(tmp_path, text)
    assert [d.format() for d in diags if d.severity != "note"] == []


def test_old_version_is_a_note(tmp_path: Path) -> None:
    path = tmp_path / "devspace.yaml"
    path.write_text("version: v1beta11\nlocalRegistry: [nonsense]\n")
    result = check_file(path, REMOTE, registry="x")
    assert result.status == "not-applicable"
    assert "predates v2beta1" in (result.message or "")


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        pytest.param(
            "vars:\n  A: ${A}\nlocalRegistry:\n  port: ${A}\n",
            [(2, 6, "vars.A"), (4, 9, "localRegistry.port")],
            id="port-self-cycle",
        ),
        pytest.param(
            "vars:\n  A: ${B}\n  B: ${A}\nimages:\n  app:\n    image: ghcr.io/${A}/x\n",
            [(2, 6, "vars.A"), (6, 12, "images.app.image")],
            id="image-cycle",
        ),
        pytest.param(
            "vars:\n  A: ${B}\n  B: ${B}\nlocalRegistry:\n  namespace: ${A}\n",
            [(3, 6, "vars.B"), (5, 14, "localRegistry.namespace")],
            id="cycle-behind-a-variable",
        ),
    ],
)
def test_a_variable_cycle_is_an_error_where_it_is_used(
    tmp_path: Path, text: str, errors: list[tuple[int, int, str]]
) -> None:
    diags = run(tmp_path, text)
    assert only(diags, "error") == errors, [d.format() for d in diags]
    assert all("variable cycle" in d.message for d in diags if d.severity == "error")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param(
            "localRegistry:\n  port: !!int abc\n", "'abc' cannot be read as !!int", id="int"
        ),
        pytest.param(
            "localRegistry:\n  port: !!int \u0665\u0660\u0660\u0660\n",
            "cannot be read as !!int",
            id="int-unicode-digits",
        ),
        pytest.param(
            "localRegistry:\n  enabled: !!bool maybe\n",
            "'maybe' cannot be read as !!bool",
            id="bool",
        ),
        pytest.param(
            "localRegistry:\n  port: !!float abc\n", "cannot be read as !!float", id="float"
        ),
    ],
)
def test_typed_scalars_that_do_not_parse(tmp_path: Path, text: str, words: str) -> None:
    diags = run(tmp_path, text)
    errors = [d for d in diags if d.severity == "error"]
    assert errors and {(d.line, d.path) for d in errors} == {(2, errors[0].path)}
    assert words in errors[0].message


def test_environment_resolves_variables(tmp_path: Path) -> None:
    diags = run(
        tmp_path, "localRegistry:\n  port: ${DEVREG_TEST_PORT}\n", env={"DEVREG_TEST_PORT": "99999"}
    )
    assert only(diags, "error") == [(2, 9, "localRegistry.port")]


def test_import_diagnostics_point_into_imported_file(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "base.yaml").write_text(
        "localRegistry:\n  port: 0\nimages:\n  app:\n    image: A/b\n"
    )
    diags = run(tmp_path, "imports:\n- path: base.yaml\n")
    errors = sorted(
        (Path(d.file).name, d.line, d.col, d.path) for d in diags if d.severity == "error"
    )
    assert errors == [
        ("base.yaml", 2, 9, "localRegistry.port"),
        ("base.yaml", 5, 12, "images.app.image"),
    ]


def test_importing_file_wins(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "base.yaml").write_text("localRegistry:\n  port: 0\n")
    diags = run(tmp_path, "imports:\n- path: base.yaml\nlocalRegistry:\n  port: 5001\n")
    assert only(diags, "error") == []


def test_remote_import_is_a_note(tmp_path: Path) -> None:
    diags = run(tmp_path, "imports:\n- git: https://example.com/x.git\n")
    assert [(d.severity, d.line, d.col) for d in diags] == [("note", 2, 3)]
