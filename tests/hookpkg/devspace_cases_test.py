"""DevSpace's own test cases, translated and run against ``devreg check``'s
pure half (issue 13): the ``$$`` escape, the ``image()``/``tag()`` helpers in
kubectl manifest files, and the config versions DevSpace knows.

Each case names the DevSpace test or fixture it comes from (devspace-sh/devspace,
``main`` at 8ff6260). Where a table says "observed", the value is what DevSpace's
own config loader returned when it was run on these inputs the way
``pkg/devspace/config/loader/loader_test.go`` ``TestParseConfig`` runs it
(``configLoader.parseConfig``), and for the runtime fields what its runtime
resolver (``variable/runtime``) then returned: DevSpace substitutes a load-time
field twice and a runtime field in four passes, so ``$${X}`` is the literal
``${X}`` only while no variable ``X`` exists.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from hookpkg.commands.check import check_file
from hookpkg.delivery import Cluster
from hookpkg.report import FileResult
from hookpkg.rewrite import Preview
from hookpkg.vars import LOAD_TIME, RUNTIME, Step, Vars
from hookpkg.yamlpos import load

REMOTE, KIND = Cluster("remote", "gke_x"), Cluster("kind", "kind-dev", "dev")
EXAMPLES = Path(__file__).parents[1] / "hook_examples"


def make_vars(text: str, env: dict[str, str] | None = None) -> Vars:
    root, _ = load(text, "devspace.yaml")
    assert root is not None
    return Vars(root.get("vars"), env or {})


def check(tmp_path: Path, text: str, cluster: Cluster = REMOTE) -> tuple[list[str], FileResult]:
    path = tmp_path / "devspace.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    result = check_file(path, cluster, registry="localhost:31234")
    return [f"{d.line}:{d.col}: {d.severity}: {d.message}" for d in result.diagnostics], result


def preview_of(result: FileResult) -> Preview:
    assert result.preview is not None, [d.format() for d in result.diagnostics]
    return result.preview


# --- the $$ escape ----------------------------------------------------------------

# pkg/util/vars/parse_test.go, TestParse: one ParseString pass (its replace
# function answers "test", or the name itself in "Multiple Replace 2").
PARSE_ONE_PASS: tuple[Step, ...] = ("fill",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(" test abc ${Test} ", " test abc test ", id="Single Replace"),
        pytest.param(" test abc $!{Test} ", " test abc test ", id="Var Name"),
        pytest.param(" test abc $${Test} ", " test abc ${Test} ", id="Single Escape"),
        pytest.param(" test abc $$${Test} ", " test abc $${Test} ", id="Single Escape 2"),
        pytest.param(
            " test ${ABC}${Test} abc $${Test}${Test} ",
            " test testtest abc ${Test}test ",
            id="Multiple Replace",
        ),
        pytest.param("Test", "Test", id="No match"),
    ],
)
def test_parse_string(text: str, expected: str) -> None:
    v = make_vars("vars:\n  Test: test\n  ABC: test\n")
    r = v.resolve(text, PARSE_ONE_PASS)
    assert (r.value, r.error) == (expected, None)


def test_parse_string_multiple_replace_2() -> None:
    """parse_test.go "Multiple Replace 2": the variable's value is its name."""
    v = make_vars("vars:\n  Test: Test\n")
    assert v.resolve("${Test}${Test}${Test}", PARSE_ONE_PASS).value == "TestTestTest"


def test_expression_not_resolved() -> None:
    """loader_test.go TestParseConfig "Expression not resolved":
    ``releaseName: $$(test)`` loads as ``$(test)``, and nothing is run."""
    r = make_vars("vars: {}\n").resolve("$$(test)")
    assert (r.value, r.complete) == ("$(test)", True)


VARS = "vars:\n  IMG: org/app\n  ESC: pre$${IMG}\n  CMD: {command: echo x}\n"
ENV = {"ENVIMG": "env/app"}

# Observed from DevSpace's loader (a load-time field: images.*, localRegistry.*,
# buildArgs) and, where the last column differs, its runtime resolver (helm
# values, selectors). ``complete`` is devreg's: whether the hook knows the value.
OBSERVED = [
    # text, load-time value, runtime value, complete
    ("$${IMG}", "org/app", "org/app", True),
    ("org/app$${UNDEFINED}", "org/app${UNDEFINED}", "org/app${UNDEFINED}", True),
    ("$$${IMG}", "${IMG}", "org/app", True),
    ("$$$${IMG}", "$${IMG}", "${IMG}", True),
    ("$$$$${IMG}", "$$${IMG}", "${IMG}", True),
    ("x$${IMG}y${IMG}", "xorg/appyorg/app", "xorg/appyorg/app", True),
    ("$${ENVIMG}", "env/app", "env/app", True),
    ("$${UNDEF}", "${UNDEF}", "${UNDEF}", True),
    ("$$${UNDEF}", "${UNDEF}", "${UNDEF}", True),
    ("$$$${UNDEF}", "$${UNDEF}", "${UNDEF}", True),
    ("${ESC}", "preorg/app", "preorg/app", True),
    ("$$(echo hi)", "$(echo hi)", "$(echo hi)", True),
    ("a $$(echo hi) b", "a $$(echo hi) b", "a $$(echo hi) b", True),
    ("$$(echo ${IMG})", "$(echo org/app)", "$(echo org/app)", True),
    ("$$(echo $${IMG})", "$(echo org/app)", "$(echo org/app)", True),
    ("$${IMG}$${IMG}", "org/apporg/app", "org/apporg/app", True),
]


@pytest.mark.parametrize(("text", "load_time", "runtime", "complete"), OBSERVED)
def test_escapes_as_devspace_loads_them(
    text: str, load_time: str, runtime: str, complete: bool
) -> None:
    v = make_vars(VARS, ENV)
    got = v.resolve(text, LOAD_TIME)
    assert (got.value, got.complete, got.error) == (load_time, complete, None)
    got = v.resolve(text, RUNTIME)
    assert (got.value, got.complete, got.error) == (runtime, complete, None)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # Observed: DevSpace leaves an undefined ${X} as written; the hook
        # cannot know the environment DevSpace will run in, so it is unresolved.
        ("${UNDEF}", "${UNDEF}"),
        # A command DevSpace runs, and an escape that leaves a command variable.
        ("$(echo hi)", "$(echo hi)"),
        ("$${CMD}", "${CMD}"),
    ],
)
def test_what_the_hook_cannot_know_stays_unresolved(text: str, value: str) -> None:
    got = make_vars(VARS, ENV).resolve(text)
    assert (got.value, got.complete) == (value, False)


def test_an_escaped_self_reference_is_no_cycle() -> None:
    """``A: $${A}`` refers to nothing (DevSpace's findVariablesInDefinition
    finds no variable in it): its value is the literal ``${A}``."""
    v = make_vars("vars:\n  A: $${A}\n")
    assert list(v.problems()) == []
    assert v.resolve("x-$${B}").value == "x-${B}"


def test_an_escape_of_an_undefined_name_is_validated(tmp_path: Path) -> None:
    """Issue 13: ``org/app$${UNDEFINED}`` is the invalid reference
    ``org/app${UNDEFINED}``, as DevSpace's loader says ("invalid reference format")."""
    diags, _ = check(
        tmp_path,
        """
        version: v2beta1
        localRegistry:
          enabled: true
        images:
          bad:
            image: org/bad$${UNDEFINED}
        """,
    )
    assert diags == [
        "6:12: error: 'org/bad${UNDEFINED}' (from 'org/bad$${UNDEFINED}') is not a valid image "
        "reference: invalid path component 'bad${UNDEFINED}' (lowercase ASCII letters, digits "
        "and single '.', '_', '__' or '-' separators between them)"
    ]


def test_an_escape_of_a_variable_is_reported_as_devspace_loads_it(tmp_path: Path) -> None:
    """Issue 13: ``$${IMG}`` was reported as ``'$org/app'``; DevSpace's second
    pass fills ``${IMG}`` in (observed: ``org/app``)."""
    diags, result = check(
        tmp_path,
        """
        version: v2beta1
        vars:
          IMG: org/app
        localRegistry:
          enabled: true
        images:
          app:
            image: $${IMG}
        """,
    )
    assert diags == []
    (img,) = preview_of(result).images
    assert (img.image, img.repository) == ("org/app", "localhost:31234/org/app")


def test_an_escape_left_in_a_local_registry_field_is_text(tmp_path: Path) -> None:
    """``namespace: $${NS}`` loads as the text ``${NS}`` (observed), which is
    no DNS label; the schema's expression branch does not take it."""
    diags, _ = check(tmp_path, "version: v2beta1\nlocalRegistry:\n  namespace: $${NS}\n")
    assert len(diags) == 1
    assert diags[0].startswith("3:14: error: '$${NS}' resolves to '${NS}': '${NS}' is not")


# --- image()/tag() in kubectl manifest files ------------------------------------


def test_local_registry_with_kubectl_deployment(tmp_path: Path) -> None:
    """e2e/tests/localregistry "should use local registry with kubectl deployment"
    (testdata/local-registry-kubectl): both containers of the manifest run
    images from the local registry (the e2e matches ``^localhost``)."""
    for name in ("devspace-kubectl.yaml", "app-deployment.yaml"):
        shutil.copy(EXAMPLES / "positive" / name, tmp_path / name)
    result = check_file(tmp_path / "devspace-kubectl.yaml", REMOTE, registry="localhost:31234")
    assert result.preview is not None, [d.format() for d in result.diagnostics]
    (img,) = result.preview.images
    in_manifest = [
        (loc.path, loc.original, loc.rewritten)
        for loc in img.locations
        if loc.file.endswith("app-deployment.yaml")
    ]
    assert in_manifest == [
        (
            "spec.template.spec.containers[0].image",
            "my-docker-username/helloworld",
            "localhost:31234/my-docker-username/helloworld:latest",
        ),
        (
            "spec.template.spec.containers[1].image",
            "image(app):tag(app)",
            "localhost:31234/my-docker-username/helloworld:latest",
        ),
    ]
    assert result.preview.notes == []


# pkg/devspace/config/loader/variable/legacy/replace_test.go,
# TestReplaceContainerNames (ReplaceImageNames is what the kubectl deployer
# calls on every ``image:`` of a manifest): image ``test: myimage`` built as
# ``someTag``. On a kind cluster nothing is rewritten, so the values are DevSpace's.
REPLACE_CASES = [
    pytest.param("myimage", "myimage:someTag", id="Image in cache"),
    pytest.param("myimage:master", "myimage:someTag", id="Image in cache replaces explicit tag"),
    pytest.param("image(test):tag(test)", "myimage:someTag", id="Replace image & tag helpers"),
    pytest.param(
        "tag(test2):image(test):tag(test)image(test)",
        "tag(test2):myimage:someTagmyimage",
        id="Do not replace unknown tag helpers",
    ),
    pytest.param(
        "image(test2):image(test):tag(test)image(test)",
        "image(test2):myimage:someTagmyimage",
        id="Do not replace unknown image helpers",
    ),
    pytest.param("image(test2):tag(test2)", None, id="Do not redeploy on unmatched helpers"),
    pytest.param("test", None, id="Do not replace image by config name"),
    pytest.param("myimage2", None, id="Image not in cache"),
    # replace.go's pattern takes a quoted name too: image("test"), tag('test').
    pytest.param("image(\"test\"):tag('test')", "myimage:someTag", id="quoted helper names"),
]


@pytest.mark.parametrize(("written", "expected"), REPLACE_CASES)
def test_manifest_image_replaced_as_devspace_does(
    tmp_path: Path, written: str, expected: str | None
) -> None:
    quoted = written.replace("'", "''")  # YAML's single-quoted style
    (tmp_path / "pod.yaml").write_text(
        f"kind: Pod\nspec:\n  containers:\n  - name: c\n    image: '{quoted}'\n"
    )
    _, result = check(
        tmp_path,
        """
        version: v2beta1
        images:
          test:
            image: myimage
            tags: [someTag]
        deployments:
          d:
            kubectl:
              manifests: [pod.yaml]
        """,
        cluster=KIND,
    )
    preview = preview_of(result)
    (img,) = preview.images
    got = [loc.rewritten for loc in img.locations if loc.file.endswith("pod.yaml")]
    assert got == ([] if expected is None else [expected])


def test_no_variable_is_filled_in_a_manifest_file(tmp_path: Path) -> None:
    """DevSpace's kubectl deployer fills in no ``${…}`` in a manifest file
    (kubectl.go: only ``inlineManifest`` goes through the runtime resolver), so
    ``${runtime.images.app.image}`` there is deployed as written: a note says so,
    with the helper to write instead; ``${IMG}`` is not an image either."""
    (tmp_path / "pod.yaml").write_text(
        "kind: Pod\nspec:\n  containers:\n"
        "  - image: ${runtime.images.app.image}:tag(app)\n"
        "  - image: ${IMG}\n"
    )
    _, result = check(
        tmp_path,
        """
        version: v2beta1
        vars:
          IMG: org/app
        localRegistry:
          enabled: true
        images:
          app:
            image: org/app
            tags: [v1]
        deployments:
          d:
            kubectl:
              manifests: [pod.yaml]
        """,
    )
    preview = preview_of(result)
    (img,) = preview.images
    assert [
        (loc.line, loc.rewritten) for loc in img.locations if loc.file.endswith("pod.yaml")
    ] == [(4, "${runtime.images.app.image}:v1")]
    assert [(n.line, n.col, n.severity) for n in preview.notes] == [(4, 12, "note")]
    assert "deploys '${runtime.images.app.image}:v1'; write image(app)" in preview.notes[0].message


def test_helpers_in_helm_values_after_an_escape(tmp_path: Path) -> None:
    """A helm value is a runtime field: ``$${runtime.images.app.image}`` loses
    its escape in DevSpace's first pass and is filled in by its runtime pass
    (observed: ``org/app``), so it is previewed rewritten, with no stray ``$``."""
    _, result = check(
        tmp_path,
        """
        version: v2beta1
        localRegistry:
          enabled: true
        images:
          app:
            image: org/app
        deployments:
          d:
            helm:
              values:
                repo: $${runtime.images.app.image}
        """,
    )
    preview = preview_of(result)
    (img,) = preview.images
    assert [loc.rewritten for loc in img.locations][1:] == ["localhost:31234/org/app"]


# --- config versions -------------------------------------------------------------


def test_unrecognized_config_version(tmp_path: Path) -> None:
    """pkg/devspace/config/versions/versions_test.go TestParse: ``DoesNotExist``
    is refused ("Unrecognized config version"): an error at the value, naming
    the versions of VersionLoader."""
    diags, result = check(tmp_path, "version: DoesNotExist\nname: test\n")
    assert diags == [
        "1:10: error: unknown config version 'DoesNotExist': DevSpace refuses to load it; it "
        "knows v1beta1, v1beta2, v1beta3, v1beta4, v1beta5, v1beta6, v1beta7, v1beta8, "
        "v1beta9, v1beta10, v1beta11, v2beta1 (v2beta1 is the one with localRegistry)"
    ]
    assert result.status == "error"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        pytest.param("v2beta2", "unknown config version 'v2beta2' (did you mean 'v2beta1'?)"),
        pytest.param("v1beta12", "unknown config version 'v1beta12' (did you mean"),
        pytest.param("v1alpha1", "unknown config version 'v1alpha1'"),
        pytest.param("'${VERSION}'", "unknown config version '${VERSION}'"),  # never resolved
        pytest.param("2", "unknown config version integer 2"),
    ],
)
def test_unknown_versions_are_errors(tmp_path: Path, version: str, expected: str) -> None:
    diags, _ = check(tmp_path, f"version: {version}\nimages:\n  app:\n    image: org/app\n")
    assert len(diags) == 1 and diags[0].startswith(f"1:10: error: {expected}"), diags


@pytest.mark.parametrize(
    ("version", "status"),
    [("v2beta1", "ok"), ("v1beta11", "not-applicable"), ("v1beta1", "not-applicable")],
)
def test_known_versions(tmp_path: Path, version: str, status: str) -> None:
    """versions_test.go TestParse: ``latest.Version`` (v2beta1) loads; the
    v1beta versions are DevSpace's too (converted on load) and predate localRegistry."""
    diags, result = check(tmp_path, f"version: {version}\nname: test\n")
    assert diags == []
    assert result.status == status


# --- the hook's own examples -------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted((EXAMPLES / "positive").glob("devspace*.yaml")), ids=lambda p: p.name
)
def test_positive_examples_pass(path: Path) -> None:
    result = check_file(path, REMOTE, registry="localhost:[NODE_PORT]")
    assert result.status == "ok", [d.format() for d in result.diagnostics]


@pytest.mark.parametrize(
    ("name", "first_error"),
    [
        ("devspace-version.yaml", "1:10: version: unknown config version 'v2beta2'"),
        ("devspace-escape.yaml", "7:12: images.api.image: 'ghcr.io/acme/shop-api${UNDEFINED}'"),
    ],
)
def test_negative_examples_fail_where_devspace_would(name: str, first_error: str) -> None:
    result = check_file(EXAMPLES / "negative" / name, REMOTE, registry="localhost:[NODE_PORT]")
    errors = [
        f"{d.line}:{d.col}: {d.path}: {d.message}"
        for d in result.diagnostics
        if d.severity == "error"
    ]
    assert result.status == "error" and errors[0].startswith(first_error), errors
