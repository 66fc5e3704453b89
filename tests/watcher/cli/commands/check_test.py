"""``devreg check`` on the project's own realistic configs (tests/fixtures/devspace/):
each passes but the ``*-invalid.yaml`` ones, none crashes, and DevSpace's
local-registry e2e layout previews as DevSpace rewrites it. Nothing outside the
repository is read (the shared real-world corpus, where it exists, is
tests/hookpkg/commands/check_test.py's extra check)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookpkg.commands.check import check_file
from hookpkg.delivery import Cluster
from watcher.cli.main import main

REMOTE = Cluster("remote", "gke_acme_dev")
FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "devspace"
CONFIGS = sorted(FIXTURES.glob("*.yaml"))


def test_there_are_fixtures() -> None:
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_fixture(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", "")  # no cluster: the offline preview
    rc = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert rc == (1 if path.stem.endswith("-invalid") else 0), out + err


def test_a_bad_file_never_stops_the_others(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", *map(str, CONFIGS)])
    out, _ = capsys.readouterr()
    assert rc == 1
    assert out.count(": preview for ") == len(CONFIGS) - 3  # 2 invalid, 1 before v2beta1
    assert "old-version.yaml: note: version v1beta11 predates v2beta1" in out


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "misplaced-invalid.yaml",
            [
                "misplaced-invalid.yaml:8:5: error: images.app.localRegistry: localRegistry "
                "belongs at the top level of the config; move it there"
            ],
            id="misplaced",
        ),
        pytest.param(
            "typos-invalid.yaml",
            [
                "typos-invalid.yaml:4:12: warning: localRegistry.enabled: 'yes' is read as true",
                "typos-invalid.yaml:5:3: error: localRegistry.locaBuild: unknown key 'locaBuild'; "
                "did you mean 'localbuild'?",
                "typos-invalid.yaml:6:9: error: localRegistry.port: 70000 is out of range",
                "typos-invalid.yaml:9:11: error: localRegistry.persistence.size: '10 GB' is not a "
                "Kubernetes quantity",
                "typos-invalid.yaml:12:12: error: images.api.image: ",
            ],
            id="typos",
        ),
    ],
)
def test_invalid_fixtures_say_where(
    name: str, expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(FIXTURES / name)]) == 1
    out = capsys.readouterr().out
    for line in expected:
        assert f"{FIXTURES / line}" in out, out


def test_devspace_image_selectors_layout() -> None:
    """DevSpace's local-registry e2e layout: ``image(api):tag(api)`` and the full
    repository in helm values get the tag, the dev selector keeps none, and a
    bare image key (``api``) is a name, not a reference to the image."""
    result = check_file(FIXTURES / "image-selectors.yaml", REMOTE, registry="localhost:[NODE_PORT]")
    assert result.preview is not None
    got = {i.key: [(loc.path, loc.rewritten) for loc in i.locations] for i in result.preview.images}
    assert got["api"] == [
        ("images.api.image", "localhost:[NODE_PORT]/acme/shop-api"),
        (
            "deployments.api.helm.values.containers[0].image",
            "localhost:[NODE_PORT]/acme/shop-api:<tag>",
        ),
        (
            "deployments.api.helm.values.containers[1].image",
            "localhost:[NODE_PORT]/acme/shop-api:<tag>",
        ),
        ("dev.api.imageSelector", "localhost:[NODE_PORT]/acme/shop-api"),
    ]
    assert got["api-debug"][0] == (
        "images.api-debug.image",
        "localhost:[NODE_PORT]/acme/shop-api-debug",
    )
