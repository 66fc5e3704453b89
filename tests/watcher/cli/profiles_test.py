"""``-p/--profile`` on the command line: on the commands that load the config
(preview, build, watch, up, env) and no other; ``devreg preview -p`` and
``devreg build -p`` use the profile (build on the test environment's kind
cluster with the real ``kind`` CLI, as tests/watcher/cli/commands/build_test.py
does); ``devreg env -p`` checks ``.devreg.env`` holds that profile's images; the
background watcher gets the same flags. The profile semantics themselves are
tests/hookpkg/profiles_test.py."""

from __future__ import annotations

import contextlib
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.testenv import KindCluster
from tests.watcher.e2e import copy_example, devreg, wait_for
from watcher.cli.main import main, parse
from watcher.daemon import dotenv
from watcher.daemon.session import Profiles

CONFIG = """\
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
- name: ci
  activation:
  - env:
      CI_PIPELINE: "release-.*"
  merge:
    images:
      app:
        tags: [release]
"""


@pytest.mark.parametrize("command", ["preview", "build", "watch", "up", "env"])
def test_the_profile_flags_of_a_command(command: str) -> None:
    options = parse([command, "-p", "a", "--profile", "b", "--disable-profile-activation"]).options
    assert (options["profiles"], options["profile_activation"]) == (["a", "b"], False)
    options = parse([command]).options
    assert (options["profiles"], options["profile_activation"]) == ([], True)


@pytest.mark.parametrize("command", ["check", "down", "status", "stop"])
def test_commands_without_profiles_refuse_the_flag(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``check`` is the hook: it checks the file as written, every profile statically."""
    assert main([command, "-p", "prod"]) == 2
    assert "unrecognized arguments: -p" in capsys.readouterr().err


def test_the_background_watcher_gets_the_same_profiles() -> None:
    assert Profiles(("a", "b")).flags() == ["--profile", "a", "--profile", "b"]
    assert Profiles((), activation=False).flags() == ["--disable-profile-activation"]
    assert parse(["watch", *Profiles(("a",), False).flags()]).options["profiles"] == ["a"]


def preview(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    config = tmp_path / "devspace.yaml"
    if not config.exists():
        config.write_text(CONFIG)
    code = main(["preview", "-c", str(config), "--context", "none", *argv])
    out, err = capsys.readouterr()
    return code, out + err


def test_preview_with_a_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = preview(tmp_path, capsys)
    assert code == 0, out
    assert "images.app.image: ghcr.io/acme/app -> localhost:[NODE_PORT]/acme/app\n" in out

    code, out = preview(tmp_path, capsys, "-p", "prod")
    assert code == 0, out
    config = tmp_path / "devspace.yaml"
    # The rewritten value is where the profile wrote it (line 12), not the base's.
    assert (
        f"{config}:12:12: images.app.image: ghcr.io/acme/app-prod -> "
        "localhost:[NODE_PORT]/acme/app-prod\n"
    ) in out
    assert "RUNTIME_IMAGES_APP_IMAGE=localhost:[NODE_PORT]/acme/app-prod\n" in out

    code, out = preview(tmp_path, capsys, "-p", "prod", "-o", "json")
    doc = json.loads(out)
    (image,) = doc["files"][0]["preview"]["images"]
    assert image["image"] == "ghcr.io/acme/app-prod"
    assert [(d["line"], d["severity"], d["message"]) for d in doc["files"][0]["diagnostics"]] == [
        (8, "note", "profile 'prod' applied (-p prod)")
    ]


def test_preview_with_an_activated_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI_PIPELINE", "release-7")
    code, out = preview(tmp_path, capsys, "-o", "json")
    assert code == 0, out
    (image,) = json.loads(out)["files"][0]["preview"]["images"]
    assert image["tag"] == "release"
    code, out = preview(tmp_path, capsys, "-o", "json", "--disable-profile-activation")
    (image,) = json.loads(out)["files"][0]["preview"]["images"]
    assert image["tag"] == "<tag>"  # not known before a build


def test_preview_with_an_unknown_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = preview(tmp_path, capsys, "-p", "prdo")
    assert code == 1
    config = tmp_path / "devspace.yaml"
    assert (
        f"{config}:7:1: error: no profile 'prdo'; did you mean 'prod'? (profiles: prod, ci)\n"
    ) in out


@pytest.mark.slow
def test_build_with_a_profile_then_env(
    tmp_path: Path, testenv: Any, docker_client: Any, kind_cluster: KindCluster
) -> None:
    """``devreg build -p alt`` builds and loads the image the profile names, and
    ``.devreg.env`` says so; ``devreg env -p`` accepts that profile, refuses another."""
    token = secrets.token_hex(4)
    base, alt = f"ghcr.io/devreg-test/prof-base-{token}", f"ghcr.io/devreg-test/prof-alt-{token}"
    config = copy_example(tmp_path / "hello", image=base)
    text = config.read_text().replace("  enabled: true\n", "").replace("  localbuild: true\n", "")
    config.write_text(
        text
        + "profiles:\n- name: alt\n  patches:\n  - op: replace\n    path: images.app.image\n"
        + f"    value: {alt}\n- name: other\n"
    )
    project = config.parent
    env = {"PATH": kind_cluster.path()}
    on_kind = ("--context", kind_cluster.context)
    try:
        done = devreg("build", *on_kind, "-p", "alt", "-o", "json", cwd=project, env=env)
        built = json.loads(done.stdout)["images"]["app"]
        assert built["reference"] == f"{alt}:{built['tag']}"
        assert docker_client.images.list(name=alt) and not docker_client.images.list(name=base)
        dotenv = (project / ".devreg.env").read_text()
        assert '# Profiles: ["alt"]\n' in dotenv
        assert f"export RUNTIME_IMAGES_APP={alt}:{built['tag']}\n" in dotenv

        shown = devreg("env", "-p", "alt", cwd=project)
        assert f"RUNTIME_IMAGES_APP={alt}:{built['tag']}" in shown.stdout
        refused = devreg("env", "-p", "other", cwd=project, check=False)
        assert refused.returncode == 1
        assert (
            "holds the images built with profiles 'alt', not with profiles 'other'"
            in refused.stderr
        )
        assert devreg("env", cwd=project).returncode == 0  # no -p: no check
    finally:
        with contextlib.suppress(Exception):
            for name in (base, alt):
                for img in docker_client.images.list(name=name):
                    docker_client.images.remove(img.id, force=True)


@pytest.mark.slow
def test_the_watcher_keeps_its_profile_when_the_config_is_edited(
    tmp_path: Path, testenv: Any, docker_client: Any, kind_cluster: KindCluster
) -> None:
    """``devreg watch --detach -p alt``: the background watcher applies ``alt``,
    says so in ``.devreg/status.json``, and applies it again when an edit of
    devspace.yaml is reloaded (the edit changes what the profile sets)."""
    token = secrets.token_hex(4)
    base = f"ghcr.io/devreg-test/watchprof-base-{token}"
    first, second = (f"ghcr.io/devreg-test/watchprof-{n}-{token}" for n in ("one", "two"))
    config = copy_example(tmp_path / "hello", image=base)
    text = config.read_text().replace("  enabled: true\n", "").replace("  localbuild: true\n", "")
    text += "profiles:\n- name: alt\n  patches:\n  - op: replace\n    path: images.app.image\n"
    config.write_text(text + f"    value: {first}\n")
    project = config.parent
    env = {"PATH": kind_cluster.path()}

    def delivered() -> str | None:
        return dotenv.read(project / ".devreg.env").get("RUNTIME_IMAGES_APP_IMAGE")

    devreg(
        "watch", "--detach", "--context", kind_cluster.context, "-p", "alt", cwd=project, env=env
    )
    try:
        assert wait_for(delivered, timeout=120, what="the first build") == first
        status = json.loads((project / ".devreg" / "status.json").read_text())
        assert status["profiles"] == ["alt"]
        config.write_text(text + f"    value: {second}\n")
        wait_for(lambda: delivered() == second, timeout=120, what="the edited profile's image")
        assert '# Profiles: ["alt"]' in (project / ".devreg.env").read_text()
    finally:
        devreg("stop", cwd=project, check=False)
        with contextlib.suppress(Exception):
            for name in (base, first, second):
                for img in docker_client.images.list(name=name):
                    docker_client.images.remove(img.id, force=True)


def test_up_loads_the_registry_settings_with_the_profiles(tmp_path: Path) -> None:
    """What ``devreg up -p`` deploys: the registry settings after the profiles (a
    patch, and devreg's merge of ``localRegistry``)."""
    from watcher.cluster.registry import load_valid_config

    config = tmp_path / "devspace.yaml"
    config.write_text(
        CONFIG
        + "- name: ns\n  patches:\n  - {op: add, path: localRegistry.namespace, value: reg-ns}\n"
        + "- name: big\n  merge:\n    localRegistry:\n      persistence: {enabled: true}\n"
    )
    base = load_valid_config(config).local_registry
    assert (base.namespace, base.persistence.enabled) == (None, False)
    chosen = load_valid_config(config, profiles=["ns", "big"]).local_registry
    assert (chosen.namespace, chosen.persistence.enabled, chosen.enabled) == ("reg-ns", True, True)


def test_up_with_an_unknown_profile_stops_before_the_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "devspace.yaml"
    config.write_text(CONFIG)
    # No kubeconfig context exists by this name: reaching the cluster would fail otherwise.
    assert main(["up", "-c", str(config), "--context", "nowhere", "-p", "nope"]) == 1
    err = capsys.readouterr().err
    assert f"{config}:7:1: error: no profile 'nope' (profiles: prod, ci)" in err
    assert "nothing was applied" in err
