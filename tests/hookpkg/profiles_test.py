"""DevSpace profiles (hookpkg/profiles.py), case by case from DevSpace itself.

Each case names where it comes from in devspace-sh/devspace:
- "docs <page>": docs/pages/configuration/profiles/*.mdx (README, merge, replace,
  patches, activation) and _partials/profiles-apply-multiple.mdx; "docs v5
  parents" is docs/versioned_docs/version-5.x/configuration/profiles/parents.mdx;
- "e2e <testdata>": e2e/tests/config/config.go over e2e/tests/config/testdata/…,
  the loader's own end-to-end cases (deployments there are still v1beta11's
  lists; the profile semantics do not depend on the shape);
- "unit <file>": pkg/devspace/config/loader/patch/{operation,path}_test.go.
The expected documents are those the DevSpace test asserts (``devspace print``
output), written out in full.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from hookpkg import yamlpos
from hookpkg.commands.check import check_file
from hookpkg.delivery import Cluster
from hookpkg.profiles import Applied, apply_profiles, child_name, parent_path, transform_path
from hookpkg.project import load_project
from hookpkg.vars import Vars

REMOTE = Cluster("remote", None)


def run(
    text: str,
    *profiles: str,
    env: dict[str, str] | None = None,
    activation: bool = True,
) -> Applied:
    root, diags = yamlpos.load(textwrap.dedent(text), "devspace.yaml")
    assert root is not None and not diags
    env = env or {}
    return apply_profiles(
        [("devspace.yaml", root)],
        profiles,
        env=env,
        vars_=Vars(root.get("vars"), env),
        activation=activation,
    )


def doc(applied: Applied) -> dict[str, Any]:
    """The document after the profiles (without the profiles themselves)."""
    assert applied.roots is not None, [d.format() for d in applied.diagnostics]
    out = applied.roots[0].plain()
    out.pop("profiles", None)
    return dict(out)


def problems(applied: Applied, severity: str = "error") -> list[tuple[int, int, str, str]]:
    return [
        (d.line, d.col, d.path, d.message) for d in applied.diagnostics if d.severity == severity
    ]


def effective(text: str, *profiles: str, **kw: Any) -> dict[str, Any]:
    """The document the profiles leave (the file as written when none applies)."""
    applied = run(text, *profiles, **kw)
    assert problems(applied) == []
    if applied.roots is None:
        root, _ = yamlpos.load(textwrap.dedent(text), "devspace.yaml")
        assert root is not None
        return {k: v for k, v in root.plain().items() if k != "profiles"}
    return doc(applied)


# --- docs: the examples of each page ------------------------------------------------

DOCS_BASE = """
images:
  backend:
    image: john/devbackend
  backend-debugger:
    image: john/debugger
deployments:
  backend:
    helm:
      values:
        containers:
        - image: john/devbackend
        - image: john/debugger
"""


def test_docs_merge_page() -> None:
    """docs merge.mdx: maps merge, ``null`` deletes, lists are replaced."""
    text = (
        DOCS_BASE
        + """
profiles:
- name: production
  merge:
    images:
      backend:
        image: john/prodbackend
      backend-debugger: null
    deployments:
      backend:
        helm:
           values:
             containers:
             - image: john/prodbackend
"""
    )
    assert effective(text, "production") == {
        "images": {"backend": {"image": "john/prodbackend"}},
        "deployments": {
            "backend": {"helm": {"values": {"containers": [{"image": "john/prodbackend"}]}}}
        },
    }


def test_docs_patches_page_first_example() -> None:
    """docs patches.mdx, "Example": three replaces by path and index."""
    text = (
        DOCS_BASE
        + """
profiles:
- name: production
  patches:
  - op: replace
    path: images.backend.image
    value: john/prodbackend
  - op: replace
    path: deployments.backend.helm.values.containers[0].image
    value: john/prodbackend
  - op: replace
    path: deployments.backend.helm.values.containers[1].image
    value: john/cache
"""
    )
    assert effective(text, "production") == {
        "images": {
            "backend": {"image": "john/prodbackend"},
            "backend-debugger": {"image": "john/debugger"},
        },
        "deployments": {
            "backend": {
                "helm": {
                    "values": {
                        "containers": [{"image": "john/prodbackend"}, {"image": "john/cache"}]
                    }
                }
            }
        },
    }


SELECTORS = (
    DOCS_BASE
    + """
profiles:
- name: staging
  patches:
  - op: replace
    path: images.backend.image
    value: john/stagingbackend
  - op: replace
    path: deployments.backend.helm.values.containers.image=john/devbackend.image
    value: john/stagingbackend
  - op: remove
    path: deployments.backend.helm.values.containers.image=john/debugger
- name: production
  patches:
  - op: replace
    path: images.backend.image
    value: john/prodbackend
  - op: replace
    path: deployments.backend.helm.values.containers.image=john/devbackend.image
    value: john/prodbackend
  - op: replace
    path: deployments.backend.helm.values.containers.image=john/debugger.image
    value: john/cache
- name: staging-descent
  patches:
  - op: replace
    path: ..[?(@.image=='john/devbackend')].image
    value: john/stagingbackend
  - op: remove
    path: deployments..[?(@.image=='john/debugger')]
- name: production-descent
  patches:
  - op: replace
    path: ..[?(@.image=='john/devbackend')].image
    value: john/prodbackend
  - op: replace
    path: deployments..[?(@.image=='john/debugger')].image
    value: john/cache
"""
)
STAGING = {
    "images": {
        "backend": {"image": "john/stagingbackend"},
        "backend-debugger": {"image": "john/debugger"},
    },
    "deployments": {
        "backend": {"helm": {"values": {"containers": [{"image": "john/stagingbackend"}]}}}
    },
}
PRODUCTION = {
    "images": {
        "backend": {"image": "john/prodbackend"},
        "backend-debugger": {"image": "john/debugger"},
    },
    "deployments": {
        "backend": {
            "helm": {
                "values": {"containers": [{"image": "john/prodbackend"}, {"image": "john/cache"}]}
            }
        }
    },
}


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        pytest.param("staging", STAGING, id="docs-patches-property-selector-staging"),
        pytest.param("production", PRODUCTION, id="docs-patches-property-selector-production"),
        # "has the same result as this previous example"
        pytest.param("staging-descent", STAGING, id="docs-patches-recursive-descent-staging"),
        pytest.param(
            "production-descent", PRODUCTION, id="docs-patches-recursive-descent-production"
        ),
    ],
)
def test_docs_patches_page_selectors(profile: str, expected: dict[str, Any]) -> None:
    """docs patches.mdx, "Config Patches" and "…using Recursive Descent Selectors"."""
    assert effective(SELECTORS, profile) == expected


def test_docs_replace_page() -> None:
    """docs replace.mdx: a whole section replaced, then a patch; replace runs first."""
    text = """
images:
  backend:
    image: john/devbackend
  backend-debugger:
    image: john/debugger
deployments:
  app-backend:
    helm:
      values:
        containers:
        - image: john/devbackend
        - image: john/debugger
profiles:
- name: production
  patches:
  - op: remove
    path: deployments.app-backend.helm.values.containers[1]
  replace:
    images:
      backend:
        image: john/prodbackend
"""
    # The page's result shows containers[0] as john/prodbackend; no statement of
    # the example changes it, so DevSpace (and devreg) leave john/devbackend.
    assert effective(text, "production") == {
        "images": {"backend": {"image": "john/prodbackend"}},
        "deployments": {
            "app-backend": {"helm": {"values": {"containers": [{"image": "john/devbackend"}]}}}
        },
    }


def test_docs_basics_page_example() -> None:
    """docs README.mdx: replace, remove an item, add (to a list: appended)."""
    text = (
        DOCS_BASE
        + """
profiles:
- name: production
  patches:
  - op: replace
    path: images.backend.image
    value: john/prodbackend
  - op: remove
    path: deployments.backend.helm.values.containers[1]
  - op: add
    path: deployments.backend.helm.values.containers
    value:
      image: john/cache
"""
    )
    result = effective(text, "production")
    assert result["images"]["backend"] == {"image": "john/prodbackend"}
    assert result["deployments"]["backend"]["helm"]["values"]["containers"] == [
        {"image": "john/devbackend"},
        {"image": "john/cache"},
    ]


def test_docs_basics_order_inside_one_profile_is_replace_merge_patches() -> None:
    """docs README.mdx "Combine several strategies": replace, then merge, then patches."""
    text = """
images:
  app: {image: a/base}
profiles:
- name: p
  patches:
  - op: replace
    path: images.app.image
    value: a/patched
  merge:
    images:
      app: {image: a/merged, target: prod}
  replace:
    images:
      app: {image: a/replaced, dockerfile: prod.Dockerfile}
"""
    assert effective(text, "p")["images"] == {
        "app": {"image": "a/patched", "dockerfile": "prod.Dockerfile", "target": "prod"}
    }


def test_docs_v5_parents_page() -> None:
    """docs v5 parents.mdx: the parent's replace and patches first, then the profile's."""
    text = """
images:
  backend:
    image: john/devbackend
  backend-debugger:
    image: john/debugger
deployments:
- name: backend
  helm:
    componentChart: true
    values:
      containers:
      - image: john/devbackend
      - image: john/debugger
profiles:
- name: production
  parents:
  - profile: staging
  patches:
  - op: add
    path: deployments.name=backend.helm.values.containers
    value:
      image: john/cache
- name: staging
  replace:
    images:
      backend:
        image: john/backendprod
  patches:
  - op: replace
    path: deployments.name=backend.helm.values.containers[0].image
    value: john/backendprod
  - op: remove
    path: deployments.name=backend.helm.values.containers[1]
"""
    applied = run(text, "production")
    assert applied.active == ("staging", "production")
    assert doc(applied) == {
        "images": {"backend": {"image": "john/backendprod"}},
        "deployments": [
            {
                "name": "backend",
                "helm": {
                    "componentChart": True,
                    "values": {
                        "containers": [{"image": "john/backendprod"}, {"image": "john/cache"}]
                    },
                },
            }
        ],
    }


def test_docs_v5_multiple_parents_apply_in_the_order_listed() -> None:
    """docs v5 parents.mdx "multiple Parent Profiles", and a parent's own parent first."""
    text = """
profiles:
- name: multi-parents
  parents:
  - profile: deployments
  - profile: images
- name: deployments
  parent: base
  patches:
  - {op: add, path: order, value: deployments}
- name: images
  patches:
  - {op: add, path: order, value: images}
- name: base
  replace:
    order: []
"""
    # 'order' is not a section profiles may replace: this one is made by a patch.
    text = text.replace(
        "  replace:\n    order: []\n", "  patches:\n  - {op: add, path: order, value: []}\n"
    )
    applied = run(text, "multi-parents")
    assert applied.active == ("base", "deployments", "images", "multi-parents")
    assert doc(applied)["order"] == ["deployments", "images"]


# --- docs: activation ---------------------------------------------------------------

ACTIVATION_VARS = """
vars:
  ENV:
    default: development
profiles:
- name: production
  activation:
  - vars:
      ENV: production
  patches:
  - op: replace
    path: images.backend.image
    value: john/prodbackend
images:
  backend: {image: john/devbackend}
"""


@pytest.mark.parametrize(
    ("text", "env", "active"),
    [
        pytest.param(ACTIVATION_VARS, {}, False, id="docs-vars-default-development"),
        # devreg has no --var: the environment overrides a variable's default, as
        # DevSpace's `source: all` does.
        pytest.param(ACTIVATION_VARS, {"ENV": "production"}, True, id="docs-vars-production"),
        pytest.param(
            ACTIVATION_VARS.replace("vars:\n      ENV: production", "env:\n      ENV: production"),
            {"ENV": "production"},
            True,
            id="docs-env",
        ),
        pytest.param(
            ACTIVATION_VARS.replace("vars:\n      ENV: production", "env:\n      ENV: 'prod-\\d+'"),
            {"ENV": "prod-12"},
            True,
            id="docs-env-regexp",
        ),
        pytest.param(
            ACTIVATION_VARS.replace("vars:\n      ENV: production", "env:\n      ENV: 'prod-\\d+'"),
            {"ENV": "prod-12-x"},
            False,
            id="docs-env-regexp-anchored",
        ),
    ],
)
def test_docs_activation(text: str, env: dict[str, str], active: bool) -> None:
    """docs activation.mdx: vars, env, a regular expression anchored at both ends."""
    applied = run(text, env=env)
    assert applied.active == (("production",) if active else ())
    if active:
        assert doc(applied)["images"]["backend"]["image"] == "john/prodbackend"


MATCH_ALL = """
vars:
  ENV: development
profiles:
- name: production
  activation:
  - env:
      CI: "true"
    vars:
      ENV: development
"""
MATCH_ANY = """
vars:
  ENV: {default: production}
profiles:
- name: production
  activation:
  - env:
      CI: "true"
  - vars:
      ENV: development
"""


@pytest.mark.parametrize(
    ("text", "env", "active"),
    [
        pytest.param(MATCH_ALL, {"CI": "true"}, True, id="docs-all-both-match"),
        pytest.param(MATCH_ALL, {"CI": "false"}, False, id="docs-all-env-fails"),
        pytest.param(
            MATCH_ALL.replace("ENV: development\nprofiles", "ENV: staging\nprofiles"),
            {"CI": "true"},
            False,
            id="docs-all-var-fails",
        ),
        pytest.param(MATCH_ANY, {"CI": "true"}, True, id="docs-any-env"),
        pytest.param(MATCH_ANY, {"ENV": "development"}, True, id="docs-any-var"),
        pytest.param(MATCH_ANY, {}, False, id="docs-any-none"),
    ],
)
def test_docs_activation_all_and_any(text: str, env: dict[str, str], active: bool) -> None:
    """docs activation.mdx "Matching All" (one activation) and "Matching Any" (several)."""
    assert run(text, env=env).active == (("production",) if active else ())


def test_disable_profile_activation() -> None:
    """docs activation.mdx "Disable Activations Globally" (--disable-profile-activation)."""
    assert run(ACTIVATION_VARS, env={"ENV": "production"}, activation=False).active == ()


# --- e2e: multiple profiles, order, duplicates ------------------------------------

MULTIPLE = """
profiles:
  - name: one
    patches:
      - op: replace
        path: deployments
        value:
        - name: test
        - name: test2
  - name: two
    patches:
      - op: remove
        path: deployments[1]
  - name: three
    patches:
      - op: add
        path: deployments
        value:
          name: test3
"""
PROFILES_YAML = """
deployments:
- name: test
profiles:
  - name: one
    patches:
      - {op: add, path: deployments, value: {name: test1}}
  - name: two
    patches:
      - {op: add, path: deployments, value: {name: test2}}
  - name: three
    patches:
      - {op: add, path: deployments, value: {name: test3}}
  - name: four
    patches:
      - {op: add, path: deployments, value: {name: test4}}
"""


def names(result: dict[str, Any]) -> list[str]:
    return [d["name"] for d in result.get("deployments", [])]


@pytest.mark.parametrize(
    ("text", "profiles", "expected"),
    [
        pytest.param(MULTIPLE, ["one", "two", "three"], ["test", "test3"], id="e2e-in-order"),
        pytest.param(MULTIPLE, [], [], id="e2e-without-profile"),
        pytest.param(
            MULTIPLE, ["one", "three", "three"], ["test", "test2", "test3"], id="e2e-duplicates"
        ),
        pytest.param(
            PROFILES_YAML,
            ["two", "one", "one", "three", "one", "two"],
            ["test", "test3", "test1", "test2"],
            id="e2e-duplicates-keep-the-last-place",
        ),
        pytest.param(
            PROFILES_YAML,
            ["one", "two", "three", "four"],
            ["test", "test1", "test2", "test3", "test4"],
            id="e2e-order",
        ),
    ],
)
def test_e2e_multiple_profiles(text: str, profiles: list[str], expected: list[str]) -> None:
    """e2e multiple-profiles/{devspace,profiles}.yaml ("should load multiple profiles in
    order", "should filter duplicate profiles"; docs profiles-apply-multiple.mdx)."""
    assert names(effective(text, *profiles)) == expected


def test_an_unknown_profile_is_an_error_at_the_profiles() -> None:
    """e2e profile/devspace.yaml: ``--profile does-not-exist`` fails."""
    applied = run(MULTIPLE, "does-not-exist")
    assert problems(applied) == [
        (2, 1, "", "no profile 'does-not-exist' (profiles: one, two, three)")
    ]
    applied = run(MULTIPLE, "thre")
    assert "did you mean 'three'?" in problems(applied)[0][3]


# --- e2e: activation ----------------------------------------------------------------

ONE = """
profiles:
  - name: one
    activation:
      - {kind}:
          FOO: {expr}
    patches:
      - op: replace
        path: deployments
        value: [{{name: test}}, {{name: test2}}]
"""


@pytest.mark.parametrize(
    ("expr", "value", "active"),
    [
        pytest.param('"true"', None, False, id="e2e-default-unset"),
        pytest.param('"true"', "false", False, id="e2e-default-no-match"),
        pytest.param('"true"', "true", True, id="e2e-default-match"),
        pytest.param('"test"', "test123", False, id="e2e-string-exact-longer"),
        pytest.param('"test"', "test", True, id="e2e-string-exact"),
        pytest.param('"^t.*$"', "some test here", False, id="e2e-regexp-exact-no-match"),
        pytest.param('"^t.*$"', "test", True, id="e2e-regexp-exact"),
        pytest.param('"\\\\^t.*\\\\$"', "false", False, id="e2e-regexp-escaped-no-match"),
        pytest.param(
            '"\\\\^t.*\\\\$"',
            "^the string begins with ^t and ends with $",
            True,
            id="e2e-regexp-escaped",
        ),
        pytest.param('".*test.*"', "the best string", False, id="e2e-substring-no-match"),
        pytest.param('".*test.*"', "a test string", True, id="e2e-substring"),
    ],
)
@pytest.mark.parametrize("kind", ["env", "vars"])
def test_e2e_activation(kind: str, expr: str, value: str | None, active: bool) -> None:
    """e2e profile-activation/{default,string-exact,regexp-exact,regexp,regexp-substring}
    /{env,vars}.yaml (the vars come from the environment here: devreg has no --var)."""
    env = {} if value is None else {"FOO": value}
    applied = run(ONE.format(kind=kind, expr=expr), env=env)
    assert applied.active == (("one",) if active else ())
    assert names(doc(applied) if active else {}) == (["test", "test2"] if active else [])


@pytest.mark.parametrize(
    ("env", "active"),
    [
        pytest.param({}, False, id="none"),
        pytest.param({"FOO": "true"}, False, id="one-of-two"),
        pytest.param({"FOO": "true", "BAR": "true"}, True, id="both"),
    ],
)
def test_e2e_activation_and(env: dict[str, str], active: bool) -> None:
    """e2e profile-activation/and/env.yaml: every name of one activation must match."""
    text = ONE.format(kind="env", expr='"true"').replace(
        'FOO: "true"', 'FOO: "true"\n          BAR: "true"'
    )
    assert run(text, env=env).active == (("one",) if active else ())


@pytest.mark.parametrize(
    ("env", "active"),
    [
        pytest.param({}, False, id="none"),
        pytest.param({"FOO": "true"}, True, id="first"),
        pytest.param({"BAR": "true"}, True, id="second"),
    ],
)
def test_e2e_activation_or(env: dict[str, str], active: bool) -> None:
    """e2e profile-activation/or/env.yaml: any of several activations."""
    text = ONE.format(kind="env", expr='"true"').replace(
        'FOO: "true"', 'FOO: "true"\n      - env:\n          BAR: "true"'
    )
    assert run(text, env=env).active == (("one",) if active else ())


ACTIVATION_MULTIPLE = """
deployments: []
profiles:
  - name: one
    activation: [{env: {FOO: "true"}}]
    patches:
      - op: replace
        path: deployments
        value: [{name: test}, {name: test2}]
  - name: two
    activation: [{env: {FOO: "true"}}]
    patches:
      - {op: remove, path: "deployments[1]"}
  - name: three
    patches:
      - {op: add, path: deployments, value: {name: test3}}
  - name: four
    patches:
      - {op: add, path: deployments, value: {name: test4}}
"""


@pytest.mark.parametrize(
    ("profiles", "env", "expected"),
    [
        pytest.param([], {"FOO": "true"}, ["test"], id="e2e-two-activated"),
        pytest.param(["three"], {}, ["test3"], id="e2e-flag-alone"),
        pytest.param(["three"], {"FOO": "true"}, ["test", "test3"], id="e2e-activated-then-flag"),
        pytest.param(["three", "three"], {"BAR": "true"}, ["test3"], id="e2e-once"),
        pytest.param(["four", "three"], {}, ["test4", "test3"], id="e2e-flags-in-order"),
        pytest.param(
            ["four", "three"], {"FOO": "true"}, ["test", "test4", "test3"], id="e2e-all-in-order"
        ),
    ],
)
def test_e2e_activation_with_profile_flags(
    profiles: list[str], env: dict[str, str], expected: list[str]
) -> None:
    """e2e profile-activation/multiple/env.yaml: the activated profiles come first,
    then --profile in the order given; a name counts once."""
    assert names(effective(ACTIVATION_MULTIPLE, *profiles, env=env)) == expected


def test_e2e_activation_and_duplicate_flags_keep_the_last_place() -> None:
    """e2e profile-activation/profiles.yaml with FOO=true and -p two one one three one two:
    the activated one, two, three, five, then the flags; each name at its last place."""
    text = """
deployments:
- name: test
profiles:
  - name: one
    activation: [{env: {FOO: "true"}}]
    patches: [{op: add, path: deployments, value: {name: test1}}]
  - name: two
    activation: [{env: {FOO: "true"}}]
    patches: [{op: add, path: deployments, value: {name: test2}}]
  - name: three
    activation: [{env: {FOO: "true"}}]
    patches: [{op: add, path: deployments, value: {name: test3}}]
  - name: four
    patches: [{op: add, path: deployments, value: {name: test4}}]
  - name: five
    activation: [{env: {FOO: "true"}}]
    patches: [{op: add, path: deployments, value: {name: test5}}]
"""
    result = effective(text, "two", "one", "one", "three", "one", "two", env={"FOO": "true"})
    assert names(result) == ["test", "test5", "test3", "test1", "test2"]


# --- e2e: patches -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """
            profiles:
              - name: test
                patches:
                  - op: replace
                    path: deployments
                    value: [{name: test, kubectl: {manifests: [test.yaml]}}]
                  - op: add
                    path: deployments
                    value: {name: test2, kubectl: {manifests: [test2.yaml]}}
            """,
            [
                {"name": "test", "kubectl": {"manifests": ["test.yaml"]}},
                {"name": "test2", "kubectl": {"manifests": ["test2.yaml"]}},
            ],
            id="e2e-replace-and-add-deployments",
        ),
        pytest.param(
            """
            deployments: [{name: test}, {name: test2}]
            profiles:
              - name: test
                patches:
                  - op: add
                    path: deployments[*]
                    value: {kubectl: {manifests: [network-policy.yaml]}}
            """,
            [
                {"name": "test", "kubectl": {"manifests": ["network-policy.yaml"]}},
                {"name": "test2", "kubectl": {"manifests": ["network-policy.yaml"]}},
            ],
            id="e2e-wildcard-match",
        ),
        pytest.param(
            """
            deployments:
              - {name: development1, helm: {componentChart: true}}
              - {name: staging1, helm: {componentChart: true}}
              - {name: production1}
            profiles:
              - name: test
                patches:
                  - op: add
                    path: deployments[?(@.name=~/^production/)]
                    value: {kubectl: {manifests: [network-policy.yaml]}}
            """,
            [
                {"name": "development1", "helm": {"componentChart": True}},
                {"name": "staging1", "helm": {"componentChart": True}},
                {"name": "production1", "kubectl": {"manifests": ["network-policy.yaml"]}},
            ],
            id="e2e-wildcard-match-regexp",
        ),
        pytest.param(
            """
            deployments:
              - {name: test, helm: {componentChart: true}}
              - {name: test2}
            profiles:
              - name: test
                patches:
                  - op: add
                    path: deployments.name=test2
                    value: {kubectl: {manifests: [network-policy.yaml]}}
            """,
            [
                {"name": "test", "helm": {"componentChart": True}},
                {"name": "test2", "kubectl": {"manifests": ["network-policy.yaml"]}},
            ],
            id="e2e-legacy-match",
        ),
        pytest.param(
            """
            deployments:
              - {name: development1, helm: {componentChart: true, timeout: 1000s}}
              - {name: staging1, helm: {componentChart: true, timeout: 2000s}}
              - {name: production1, helm: {componentChart: true, timeout: 2000s}}
            profiles:
              - name: test
                patches:
                  - op: remove
                    path: deployments[?(@.helm.timeout=="2000s")]
            """,
            [{"name": "development1", "helm": {"componentChart": True, "timeout": "1000s"}}],
            id="e2e-wildcard-match-comparison",
        ),
        pytest.param(
            """
            deployments:
              - {name: test, helm: {componentChart: true}}
              - {name: test2, kubectl: {}}
            profiles:
              - name: test
                patches:
                  - op: add
                    path: deployments[*].kubectl.manifests
                    value: [test2.yaml]
            """,
            [
                {"name": "test", "helm": {"componentChart": True}},
                {"name": "test2", "kubectl": {"manifests": ["test2.yaml"]}},
            ],
            id="e2e-wildcard-match-some",
        ),
        pytest.param(
            """
            vars:
              PREFIX: test-me
            deployments:
              - name: ${PREFIX}-server
                helm: {values: {containers: [{name: container-0, image: x}]}}
            profiles:
              - name: test
                patches:
                  - op: replace
                    path: deployments.name=${PREFIX}-server.helm.values.containers[0].name
                    value: replace-0
            """,
            [
                {
                    "name": "${PREFIX}-server",
                    "helm": {"values": {"containers": [{"name": "replace-0", "image": "x"}]}},
                }
            ],
            id="e2e-path-variable",
        ),
    ],
)
def test_e2e_profile_patches(text: str, expected: list[Any]) -> None:
    """e2e profile-patches/*.yaml (config.go "should … using profile patches")."""
    assert effective(textwrap.dedent(text), "test")["deployments"] == expected


def test_e2e_patch_a_variable() -> None:
    """e2e profile-patches/var-patch.yaml: a profile changes ``vars``; the
    variables are read after the profiles."""
    text = """
    vars:
      - name: BIN
        value: sample
    images:
      test:
        image: ${BIN}
    profiles:
      - name: alt
        patches:
          - op: replace
            path: vars.name=BIN.value
            value: sample-alt
    """
    assert effective(textwrap.dedent(text), "alt")["vars"] == [
        {"name": "BIN", "value": "sample-alt"}
    ]


def test_e2e_add_does_not_overwrite_an_existing_key() -> None:
    """e2e patch-add-dont-overwrite-existing-key: ``add`` on an existing scalar key
    fails; on a missing one it adds."""
    text = """
images:
  importme:
    image: golang:1.17
    context: ../..
profiles:
  - name: deploy
    patches:
      - op: add
        path: images.importme.context
        value: ../..
  - name: patch-ok
    patches:
      - op: add
        path: images.importme.rebuildStrategy
        value: ignoreContextChanges
"""
    applied = run(text, "deploy")
    assert problems(applied) == [
        (
            10,
            15,
            "profiles[0].patches[0].path",
            "'images.importme.context' already exists; op add does not overwrite it "
            "(use op: replace)",
        )
    ]
    result = effective(text, "patch-ok")
    assert result["images"]["importme"]["rebuildStrategy"] == "ignoreContextChanges"


NEW = """
vars:
  NAME: name
  MANIFEST: {}
images:
  test:
    image: test
deployments:
  test:
    kubectl:
      manifests:
        - ${MANIFEST}
profiles:
  - name: remove-image
    replace:
      images: {}
  - name: merge-deployments
    merge:
      deployments:
        test456:
          kubectl:
            manifests:
              - ${MANIFEST}
              - test.yaml
  - name: replace-manifests
    replace:
      deployments:
        test123:
          kubectl:
            manifests:
              - test123.yaml
              - ${MANIFEST}
  - name: add-deployment
    patches:
      - op: add
        path: deployments.test678
        value:
          kubectl:
            manifests:
              - ${MANIFEST}
"""


@pytest.mark.parametrize(
    ("profile", "images", "deployments"),
    [
        pytest.param("remove-image", [], ["test"], id="e2e-remove-image"),
        pytest.param("merge-deployments", ["test"], ["test", "test456"], id="e2e-merge"),
        pytest.param("replace-manifests", ["test"], ["test123"], id="e2e-replace"),
        pytest.param("add-deployment", ["test"], ["test", "test678"], id="e2e-add"),
    ],
)
def test_e2e_profile_v2beta1(profile: str, images: list[str], deployments: list[str]) -> None:
    """e2e profile/devspace_new.yaml ("should load profile cached and uncached")."""
    result = effective(NEW, profile)
    assert list(result["images"]) == images
    assert list(result["deployments"]) == deployments
    if profile == "merge-deployments":
        assert result["deployments"]["test456"]["kubectl"]["manifests"] == [
            "${MANIFEST}",
            "test.yaml",
        ]


# --- unit: the patch operations --------------------------------------------------


def patched(text: str, op: str, path: str, value: str | None = None) -> Any:
    patch = f"  - op: {op}\n    path: {path!r}\n"
    if value is not None:
        patch += f"    value: {value}\n"
    applied = run(text + "\nprofiles:\n- name: p\n  patches:\n" + patch, "p")
    errors = problems(applied)
    return doc(applied) if not errors else errors[0][3]


@pytest.mark.parametrize(
    ("text", "op", "path", "value", "expected"),
    [
        # operation_test.go TestAddOperation
        pytest.param("foo: bar", "add", ".baz", "qux", {"foo": "bar", "baz": "qux"}, id="add-element-to-object"),
        pytest.param("foo: [bar, baz]", "add", ".foo[1]", "qux", {"foo": ["bar", "qux", "baz"]}, id="add-element-to-array"),
        pytest.param("foo: bar", "add", ".child", "{grandchild: {}}", {"foo": "bar", "child": {"grandchild": {}}}, id="add-object-to-object"),
        pytest.param("foo: [bar]", "add", ".foo", "[abc, def]", {"foo": ["bar", ["abc", "def"]]}, id="append-list-as-one-item"),
        pytest.param("foo: bar", "add", "$", "{baz: qux}", {"foo": "bar", "baz": "qux"}, id="add-to-root"),
        pytest.param("dev: {}", "add", ".dev.ports", "[{imageName: test}]", {"dev": {"ports": [{"imageName": "test"}]}}, id="add-array-to-missing-path-with-parent"),
        pytest.param("images: {backend: {image: john/devbackend}}", "add", ".images.backend", "{dockerfile: ./prod.Dockerfile}", {"images": {"backend": {"image": "john/devbackend", "dockerfile": "./prod.Dockerfile"}}}, id="add-property-to-object"),
        pytest.param("images: {backend: {image: a}}", "add", ".images", "{backend-prod: {image: b}}", {"images": {"backend": {"image": "a"}, "backend-prod": {"image": "b"}}}, id="add-to-map"),
        pytest.param("deployments: [{name: devbackend}]", "add", ".deployments", "{name: prodbackend}", {"deployments": [{"name": "devbackend"}, {"name": "prodbackend"}]}, id="add-to-array"),
        pytest.param("version: v1beta10", "add", ".deployments", "[{name: prodbackend}]", {"version": "v1beta10", "deployments": [{"name": "prodbackend"}]}, id="add-to-array-that-does-not-exist"),
        pytest.param("deployments: [{name: a}, {name: b}]", "add", "deployments[*].helm", "{values: {}}", {"deployments": [{"name": "a", "helm": {"values": {}}}, {"name": "b", "helm": {"values": {}}}]}, id="add-to-wildcard-path-that-does-not-exist"),
        pytest.param("deployments: [{name: a}, {name: b, kubectl: {manifests: []}}]", "add", "deployments[*].kubectl.manifests", "test.yaml", {"deployments": [{"name": "a"}, {"name": "b", "kubectl": {"manifests": ["test.yaml"]}}]}, id="add-to-wildcard-path-where-some-exist"),
        # TestRemoveOperation
        pytest.param("foo: bar\nbaz: qux", "remove", ".baz", None, {"foo": "bar"}, id="remove-from-object"),
        pytest.param("foo: [bar, qux, baz]", "remove", ".foo[1]", None, {"foo": ["bar", "baz"]}, id="remove-from-array"),
        pytest.param("foo: bar\nqux: {baz: 1, bar: ~}", "remove", ".qux.bar", None, {"foo": "bar", "qux": {"baz": 1}}, id="remove-nil-element"),
        pytest.param("deployments: [{name: devbackend}, {name: prodbackend}]", "remove", ".deployments[?(@.name=='prodbackend')]", None, {"deployments": [{"name": "devbackend"}]}, id="remove-by-filter"),
        pytest.param("dev: {ports: [{name: rails, reverseForward: [{port: 9200}]}]}", "remove", "dev.ports[?(@.name=='rails')].reverseForward[?(@.port==9200 || @.port=='9200')]", None, {"dev": {"ports": [{"name": "rails", "reverseForward": []}]}}, id="remove-by-numeric-filter"),
        pytest.param("dev: {ports: [{name: rails, reverseForward: [{port: '9200'}]}]}", "remove", "dev.ports.name=rails.reverseForward.port=9200", None, {"dev": {"ports": [{"name": "rails", "reverseForward": []}]}}, id="remove-by-string-filter-legacy"),
        # TestReplaceOperation
        pytest.param("foo: bar\nbaz: qux", "replace", "baz", "boo", {"foo": "bar", "baz": "boo"}, id="replace-in-object"),
        pytest.param("foo: [bar]", "replace", ".foo[0]", "baz", {"foo": ["baz"]}, id="replace-sole-element"),
        pytest.param("images: {a: {image: x}, b: {image: y, dockerfile: d}}", "replace", ".images.*.image", "z", {"images": {"a": {"image": "z"}, "b": {"image": "z", "dockerfile": "d"}}}, id="replace-all-property-values"),
        pytest.param("images: {a: {image: x}, b: {image: y, dockerfile: d}}", "replace", ".images.*", "{image: z}", {"images": {"a": {"image": "z"}, "b": {"image": "z"}}}, id="replace-all-objects"),
        pytest.param("deployments: [{name: devbackend}, {name: prodbackend}]", "replace", ".deployments[?(@.name=='prodbackend')]", "{name: testbackend}", {"deployments": [{"name": "devbackend"}, {"name": "testbackend"}]}, id="replace-array-item-by-name"),
        # ApplyPatchesOnObject: a replace of something absent becomes an add.
        pytest.param("images: {}", "replace", "images.backend", "{image: a}", {"images": {"backend": {"image": "a"}}}, id="replace-absent-becomes-add"),
        pytest.param("deployments: [{name: a}]", "replace", "/deployments/0", "{name: b}", {"deployments": [{"name": "b"}]}, id="xpath"),
    ],
)  # fmt: skip
def test_unit_operations(text: str, op: str, path: str, value: str | None, expected: Any) -> None:
    """unit patch/operation_test.go (Add, Remove, Replace), through a profile."""
    assert patched(text, op, path, value) == expected


@pytest.mark.parametrize(
    ("text", "op", "path", "value", "message"),
    [
        pytest.param("deployments: [{name: a}]", "remove", "/deployments/1", None, "matches nothing, so there is nothing to remove", id="xpath-remove-no-match"),
        pytest.param("deployments: [{name: a}]", "replace", "/images/x", "y", "matches nothing, so there is nothing to replace", id="xpath-replace-no-match"),
        # TransformPath turns only /0/ and /*/ into subscripts: /a/b stays one name.
        pytest.param("images: {a: {image: x}}", "replace", "/images/a/image", "y", "matches nothing, so there is nothing to replace", id="xpath-names-are-not-split"),
        pytest.param("images: {a: {image: x}}", "replace", "images.b.image", "y", "matches nothing, and neither does 'images.b'", id="parent-missing"),
        pytest.param("images: {a: {image: x}}", "move", "images.a", "y", "unexpected op 'move'", id="bad-op"),
        pytest.param("images: {a: {image: x}}", "add", "images.a.tags", None, "op add needs a value", id="no-value"),
        pytest.param("images: {a: {image: x}}", "add", "images.a", "[x]", "op add puts the keys of a mapping value into it", id="add-list-to-map"),
        pytest.param("images: {a: {image: x}}", "add", "images.a", "{image: y}", "already has 'image'", id="add-existing-key"),
        pytest.param("tags: [a, b]", "add", "tags[5]", "c", "there is no item 5 in the list (2 items)", id="add-past-the-end"),
        pytest.param("images: {}", "replace", "images[?(@.x==", "y", "not a path DevSpace reads", id="bad-path"),
        pytest.param("deployments: [{name: api}]", "remove", "deployments[name=api]", None, "[name=api] is not DevSpace's selector: write .name=api or [?(@.name=='api')]", id="bracketed-selector"),
    ],
)  # fmt: skip
def test_patch_errors(text: str, op: str, path: str, value: str | None, message: str) -> None:
    """What DevSpace refuses or silently drops is an error at the patch."""
    result = patched(text, op, path, value)
    assert isinstance(result, str) and message in result, result


def test_a_remove_of_nothing_is_a_warning_and_changes_nothing() -> None:
    """ApplyPatchesOnObject skips a remove whose path matches nothing."""
    applied = run(
        "images: {a: {image: x}}\nprofiles:\n- name: p\n  patches:\n  - {op: remove, path: images.b}\n",
        "p",
    )
    assert problems(applied) == []
    assert problems(applied, "warning") == [
        (5, 24, "profiles[0].patches[0].path", "'images.b' matches nothing: this remove does nothing (DevSpace skips it too)")
    ]  # fmt: skip
    assert doc(applied) == {"images": {"a": {"image": "x"}}}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.dev", "$.dev"),
        (".dev", ".dev"),
        ("dev", "dev"),
        ("deployments.name=backend.helm.values.containers", "deployments[?(@.name=='backend')].helm.values.containers"),
        ("deployments.name=backend.helm.values.containers.name=proxy", "deployments[?(@.name=='backend')].helm.values.containers[?(@.name=='proxy')]"),
        ("/deployments/0", "$.deployments[0]"),
        ("deployments/0", "deployments[0]"),
        ("deployments/0/containers/1", "deployments[0].containers[1]"),
        ("deployments.*.containers.*", "deployments.*.containers.*"),
        ("deployments/*/containers/*", "deployments[*].containers[*]"),
        ("deployments/0/containers/1/name", "deployments[0].containers[1].name"),
        ("deployments.name=test2", "deployments[?(@.name=='test2')]"),
        ("deployments.name=backend.helm.values.containers[1]", "deployments[?(@.name=='backend')].helm.values.containers[1]"),
        ("deployments[?(@.name=='staging1')]", "deployments[?(@.name=='staging1')]"),
        ("deployments[?(@.helm.timeout > 1000)]", "deployments[?(@.helm.timeout > 1000)]"),
        ("deployments.name=backend.helm.values.containers.image=john/devbackend.image", "deployments[?(@.name=='backend')].helm.values.containers[?(@.image=='john/devbackend')].image"),
        ("dev.ports.name=rails.reverseForward.port=9200", "dev.ports[?(@.name=='rails')].reverseForward[?(@.port=='9200' || @.port==9200)]"),
    ],
)  # fmt: skip
def test_unit_transform_path(path: str, expected: str) -> None:
    """unit patch/path_test.go TestTransformPath."""
    assert transform_path(path) == expected


@pytest.mark.parametrize(
    ("path", "parent", "child"),
    [
        ("parent1.child1", "parent1", "child1"),
        ("parent1['child1']", "parent1", "child1"),
        ("parent1.parent2.child1", "parent1.parent2", "child1"),
        ("$.deployments[*].parent1.child1", "$.deployments[*].parent1", "child1"),
        ("$.deployments[?(@.name=~/^backend/)].child1", "$.deployments[?(@.name=~/^backend/)]", "child1"),
        ("$.deployments[*]", "$.deployments", "*"),
        ('deployments["baz"]', "deployments", "baz"),
    ],
)  # fmt: skip
def test_unit_parent_path_and_child_name(path: str, parent: str, child: str) -> None:
    """unit patch/path_test.go TestGetParentPath and TestGetChildName."""
    assert (parent_path(path), child_name(path)) == (parent, child)


# --- devreg: positions, files, the loader ------------------------------------------

POSITIONS = """\
version: v2beta1
localRegistry:
  enabled: true
images:
  app:
    image: ghcr.io/acme/app
profiles:
- name: prod
  patches:
  - op: replace
    path: images.app.image
    value: ghcr.io/acme/app-prod
- name: merged
  merge:
    images:
      app:
        image: Bad/Upper
- name: broken
  patches:
  - op: replace
    path: images.ap.image
    value: x
"""


def test_a_patched_value_keeps_the_profiles_position(tmp_path: Path) -> None:
    config = tmp_path / "devspace.yaml"
    config.write_text(POSITIONS)
    project = load_project(config, profiles=["prod"], env={})
    assert project.config is not None
    image = project.config.images["app"]
    assert (image.image, image.line, image.col) == ("ghcr.io/acme/app-prod", 12, 12)
    assert project.config.profiles == ("prod",)
    base = load_project(config, env={})
    assert base.config is not None and base.config.images["app"].line == 6


def test_a_merged_value_is_checked_where_the_profile_wrote_it(tmp_path: Path) -> None:
    config = tmp_path / "devspace.yaml"
    config.write_text(POSITIONS)
    project = load_project(config, profiles=["merged"], env={})
    assert project.config is None
    errors = [d for d in project.diagnostics if d.severity == "error"]
    assert [(d.file, d.line, d.col, d.path) for d in errors] == [
        (str(config), 17, 16, "images.app.image")
    ]


def test_an_error_in_a_profile_is_a_config_error_at_the_profile(tmp_path: Path) -> None:
    config = tmp_path / "devspace.yaml"
    config.write_text(POSITIONS)
    project = load_project(config, profiles=["broken"], env={})
    assert project.config is None
    (error,) = [d for d in project.diagnostics if d.severity == "error"]
    assert error.format() == (
        f"{config}:21:11: error: profiles[2].patches[0].path: 'images.ap.image' matches "
        "nothing, and neither does 'images.ap': the patch would change nothing"
    )


def test_the_hook_checks_the_file_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``devreg check`` applies no profile (not even an activated one); the
    preview applies them."""
    config = tmp_path / "devspace.yaml"
    config.write_text(
        POSITIONS.replace("- name: prod\n", "- name: prod\n  activation: [{env: {X: '1'}}]\n")
    )
    monkeypatch.setenv("X", "1")
    checked = check_file(config, REMOTE, registry="r")
    assert checked.status == "ok" and checked.preview is not None
    assert checked.preview.images[0].image == "ghcr.io/acme/app"
    previewed = check_file(config, REMOTE, registry="r", profiles=[])
    assert previewed.preview is not None
    assert previewed.preview.images[0].image == "ghcr.io/acme/app-prod"


def test_profiles_across_imports(tmp_path: Path) -> None:
    """Imports are merged before the profiles (DevSpace's ResolveImports): a profile
    in the main file patches an image of an import, a profile of an import is
    known by name; every entry stays with its file."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "base.yaml").write_text(
        "images:\n  api:\n    image: ghcr.io/acme/api\n"
        "profiles:\n- name: from-base\n  merge:\n    images:\n      worker:\n"
        "        image: ghcr.io/acme/worker\n"
    )
    config = tmp_path / "devspace.yaml"
    config.write_text(
        "version: v2beta1\nimports:\n- path: base.yaml\nimages:\n  app:\n    image: ghcr.io/acme/app\n"
        "profiles:\n- name: prod\n  patches:\n  - op: add\n    path: images.api.tags\n"
        "    value: [prod]\n"
    )
    project = load_project(config, profiles=["prod", "from-base"], env={})
    assert project.config is not None, [d.format() for d in project.diagnostics]
    images = project.config.images
    assert list(images) == ["app", "api", "worker"]
    assert images["api"].tags == ("prod",)
    assert (images["api"].file, images["worker"].file) == (
        str(tmp_path / "base.yaml"),
        str(tmp_path / "base.yaml"),
    )
    assert images["worker"].line == 9  # the merge's node, in base.yaml
    assert project.config.profiles == ("prod", "from-base")


def test_an_applied_profiles_local_registry_is_reported_once(tmp_path: Path) -> None:
    config = tmp_path / "devspace.yaml"
    config.write_text("profiles:\n- name: p\n  merge:\n    localRegistry:\n      prot: 5000\n")
    for profiles in ([], ["p"]):
        project = load_project(config, profiles=profiles, env={})
        errors = [d for d in project.diagnostics if d.severity == "error"]
        assert [(d.line, d.col) for d in errors] == [(5, 7)]
        assert errors[0].path == (
            "localRegistry.prot" if profiles else "profiles[0].merge.localRegistry.prot"
        )


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        pytest.param("- name: p\n  merge: $(cat more.yaml)\n", "merge is an expression", id="merge-command"),
        pytest.param("- name: p\n  merge:\n    name: x\n", "a profile cannot merge 'name'", id="merge-unknown-section"),
        pytest.param("- name: p\n  parent: q\n", "no profile 'q'", id="unknown-parent"),
        pytest.param("- name: p\n  parent: p\n", "a profile is its own ancestor", id="cycle"),
        pytest.param("- name: p\n  parent: q\n  parents: [{profile: q}]\n- name: q\n", "parent and parents cannot both be set", id="parent-and-parents"),
        pytest.param("- name: p\n  parents: [{profile: q, source: {path: other}}]\n", "not supported by devreg", id="parent-source"),
        pytest.param("- name: p\n  patches: {op: add}\n", "patches must be a list", id="patches-not-a-list"),
        pytest.param("- name: p\n  patches:\n  - {path: images}\n", "op is missing", id="op-missing"),
        pytest.param("- name: p\n  activation: [{env: {X: '('}}]\n", "is not a regular expression", id="bad-activation-regexp"),
    ],
)  # fmt: skip
def test_profile_errors(profile: str, message: str) -> None:
    applied = run("images: {}\nprofiles:\n" + profile, "p")
    errors = problems(applied)
    assert errors and message in errors[0][3], applied.diagnostics


def test_no_profile_leaves_the_files_as_they_are() -> None:
    applied = run(MULTIPLE)
    assert applied.roots is None and applied.active == () and applied.diagnostics == []
