"""SPEC §4: every location an image URL is rewritten at, with its position."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from hookpkg.commands.check import check_file
from hookpkg.delivery import Cluster
from hookpkg.rewrite import Preview

REMOTE, KIND = Cluster("remote", "gke"), Cluster("kind", "kind-dev", "dev")
BASE = """\
localRegistry:
  enabled: true
images:
  app:
    image: ghcr.io/org/app
"""


def preview(tmp_path: Path, extra: str, cluster: Cluster = REMOTE, base: str = BASE) -> Preview:
    path = tmp_path / "devspace.yaml"
    path.write_text(base + textwrap.dedent(extra))
    result = check_file(path, cluster, registry="localhost:31234")
    assert result.preview is not None, [d.format() for d in result.diagnostics]
    return result.preview


def locations(p: Preview, key: str = "app") -> list[tuple[int, int, str, str, str]]:
    (img,) = [i for i in p.images if i.key == key]
    return [(loc.line, loc.col, loc.path, loc.original, loc.rewritten) for loc in img.locations]


IMAGE_LOC = (5, 12, "images.app.image", "ghcr.io/org/app", "localhost:31234/org/app")

CASES = [
    pytest.param("", [IMAGE_LOC], id="image-field"),
    pytest.param(
        "dev:\n  app:\n    imageSelector: ghcr.io/org/app\n    devImage: ghcr.io/org/app:debug\n",
        [
            IMAGE_LOC,
            (8, 20, "dev.app.imageSelector", "ghcr.io/org/app", "localhost:31234/org/app"),
            (9, 15, "dev.app.devImage", "ghcr.io/org/app:debug", "localhost:31234/org/app:debug"),
        ],
        id="dev-selector-keeps-written-tag",
    ),
    pytest.param(
        "hooks:\n- command: x\n  container:\n    imageSelector: ghcr.io/org/app\n",
        [
            IMAGE_LOC,
            (
                9,
                20,
                "hooks[0].container.imageSelector",
                "ghcr.io/org/app",
                "localhost:31234/org/app",
            ),
        ],
        id="hook-selector",
    ),
    pytest.param(
        "deployments:\n  d:\n    helm:\n      values:\n        image: ghcr.io/org/app:old\n"
        "        other: ghcr.io/org/other\n        key: app\n",
        [
            IMAGE_LOC,
            (
                10,
                16,
                "deployments.d.helm.values.image",
                "ghcr.io/org/app:old",
                "localhost:31234/org/app:<tag>",
            ),
        ],
        id="helm-value-gets-built-tag-and-key-is-not-an-image",
    ),
    pytest.param(
        "deployments:\n  d:\n    helm:\n      values:\n        containers:\n        - image: image(app):tag(app)\n",
        [
            IMAGE_LOC,
            (
                11,
                18,
                "deployments.d.helm.values.containers[0].image",
                "image(app):tag(app)",
                "localhost:31234/org/app:<tag>",
            ),
        ],
        id="helpers",
    ),
    pytest.param(
        "deployments:\n  d:\n    helm:\n      values:\n        repo: ${runtime.images.app.image}\n"
        "        tag: ${runtime.images.app.tag}\n",
        [
            IMAGE_LOC,
            (
                10,
                15,
                "deployments.d.helm.values.repo",
                "${runtime.images.app.image}",
                "localhost:31234/org/app",
            ),
            (11, 14, "deployments.d.helm.values.tag", "${runtime.images.app.tag}", "<tag>"),
        ],
        id="runtime-variables",
    ),
    pytest.param(
        "vars:\n  IMG: ghcr.io/org/app\ndev:\n  app:\n    imageSelector: ${IMG}\n",
        [IMAGE_LOC, (10, 20, "dev.app.imageSelector", "${IMG}", "localhost:31234/org/app")],
        id="selector-through-variable",
    ),
]


@pytest.mark.parametrize(("extra", "expected"), CASES)
def test_locations(
    tmp_path: Path, extra: str, expected: list[tuple[int, int, str, str, str]]
) -> None:
    assert locations(preview(tmp_path, extra)) == expected


def test_manifest_files_are_read_not_written(tmp_path: Path) -> None:
    manifest = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n    image: ghcr.io/org/app:v1\n"
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "pod.yaml").write_text(
        "---\napiVersion: v1\nkind: Namespace\n---\n" + manifest
    )
    before = (tmp_path / "k8s" / "pod.yaml").read_bytes()
    p = preview(tmp_path, "deployments:\n  d:\n    kubectl:\n      manifests:\n      - k8s/\n")
    assert locations(p)[1] == (
        10,
        12,
        "[1].spec.containers[0].image",
        "ghcr.io/org/app:v1",
        "localhost:31234/org/app:<tag>",
    )
    assert p.images[0].locations[1].file == str(tmp_path / "k8s" / "pod.yaml")
    assert (tmp_path / "k8s" / "pod.yaml").read_bytes() == before


def test_missing_manifest_is_a_note(tmp_path: Path) -> None:
    p = preview(tmp_path, "deployments:\n  d:\n    kubectl:\n      manifests:\n      - nope.yaml\n")
    assert [(n.severity, n.line, n.col) for n in p.notes] == [("note", 10, 9)]


MANIFESTS = "deployments:\n  d:\n    kubectl:\n      manifests:\n"


def test_hostile_manifests_are_notes_and_never_block(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "big.yaml").write_text("a: " + "x" * (2 << 20) + "\n")
    (tmp_path / "bad.yaml").write_text("a: [\n")
    entries = [
        "fifo.yaml",
        "zero.yaml",
        "big.yaml",
        "bad.yaml",
        "/**",
        "../../../../**/*.yaml",
        "/dev/*",
    ]
    start = time.perf_counter()
    p = preview(tmp_path, MANIFESTS + "".join(f"      - {e}\n" for e in entries))
    assert time.perf_counter() - start < 10  # a bound: '/**' used to walk the filesystem
    notes = [(n.line, n.message) for n in p.notes]
    assert [line for line, _ in notes] == [10, 11, 12, 13, 14, 15, 16]
    assert "is a FIFO (named pipe), not a regular file" in notes[0][1]
    assert "outside the repository" in notes[1][1]  # the link points out of it
    assert "larger than the 1 MiB limit" in notes[2][1]
    assert "invalid YAML" in notes[3][1]
    assert all("outside the repository" in m for _, m in notes[4:])


def test_a_directory_entry_linking_out_is_not_read(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "zero.yaml").symlink_to("/dev/zero")
    (tmp_path / "k8s" / "fifo.yml").symlink_to(tmp_path / "f")
    os.mkfifo(tmp_path / "f")
    (tmp_path / "k8s" / "pod.yaml").write_text("spec:\n  image: ghcr.io/org/app\n")
    p = preview(tmp_path, MANIFESTS + "      - k8s\n")
    assert locations(p)[1][:3] == (2, 10, "spec.image")
    assert ["FIFO" in n.message for n in p.notes] == [True]


def test_an_aliased_image_is_one_location(tmp_path: Path) -> None:
    extra = (
        "x-image: &img ghcr.io/org/app\n"
        "deployments:\n  d:\n    helm:\n      values:\n"
        "        a: &a [*img, *img, {image: *img}]\n"
        "        b: [*a, *a, *a, *a]\n"
    )
    p = preview(tmp_path, extra)
    assert locations(p) == [
        IMAGE_LOC,
        (
            6,
            10,
            "deployments.d.helm.values.a[0]",
            "ghcr.io/org/app",
            "localhost:31234/org/app:<tag>",
        ),
    ]


def test_tag_in_image_moves_to_tags(tmp_path: Path) -> None:
    p = preview(
        tmp_path,
        "",
        base="localRegistry:\n  enabled: true\nimages:\n  app:\n    image: org/app:1.2\n",
    )
    assert p.variables["RUNTIME_IMAGES_APP"] == "localhost:31234/org/app:1.2"
    assert locations(p) == [(5, 12, "images.app.image", "org/app:1.2", "localhost:31234/org/app")]


def test_kind_is_not_rewritten(tmp_path: Path) -> None:
    base = "images:\n  app:\n    image: ghcr.io/org/app\n    tags: [dev]\n"
    p = preview(tmp_path, "", cluster=KIND, base=base)
    assert p.images[0].path == "kind-load"
    assert locations(p) == [(3, 12, "images.app.image", "ghcr.io/org/app", "ghcr.io/org/app")]
    assert p.variables == {
        "DEVSPACE_HOOK_IMAGE_NAME": "ghcr.io/org/app",
        "DEVSPACE_HOOK_IMAGE_NAME_APP": "ghcr.io/org/app",
        "RUNTIME_IMAGES_APP": "ghcr.io/org/app:dev",
        "RUNTIME_IMAGES_APP_IMAGE": "ghcr.io/org/app",
        "RUNTIME_IMAGES_APP_TAG": "dev",
    }


def test_random_tag_is_unknown(tmp_path: Path) -> None:
    p = preview(tmp_path, "    tags: ['dev-####']\n")
    assert p.variables["RUNTIME_IMAGES_APP_TAG"] == "<tag>"


def test_golden_devspace_fixture(corpus: Path) -> None:
    """DevSpace's own local-registry-image-selectors fixture (corpus 07)."""
    path = corpus / "07-devspace-sh-devspace.yaml"
    result = check_file(path, REMOTE, registry="localhost:[NODE_PORT]")
    assert result.preview is not None
    got = {i.key: [(loc.path, loc.rewritten) for loc in i.locations] for i in result.preview.images}
    assert got["app"] == [
        ("images.app.image", "localhost:[NODE_PORT]/my-docker-username/helloworld"),
        (
            "deployments.app.helm.values.containers[0].image",
            "localhost:[NODE_PORT]/my-docker-username/helloworld:<tag>",
        ),
        (
            "deployments.app.helm.values.containers[1].image",
            "localhost:[NODE_PORT]/my-docker-username/helloworld:<tag>",
        ),
        ("dev.app.imageSelector", "localhost:[NODE_PORT]/my-docker-username/helloworld"),
    ]
