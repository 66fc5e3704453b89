"""The command line: each flag is registered on the commands that use it,
the parsed options are exactly the command's keyword arguments, and ``main``
prints the command's result and exits with its code. No cluster needed."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from watcher.cli.main import COMMANDS, Invocation, main, parse

CONFIG = Path("devspace.yaml")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["check", "a.yaml", "--context", "kind-dev"],
            Invocation(
                "check",
                {
                    "config": CONFIG,
                    "context": "kind-dev",
                    "files": [Path("a.yaml")],
                    "node_port": None,
                },
            ),
            id="check",
        ),
        pytest.param(
            ["preview", "--cluster", "--namespace", "dev", "--format", "json"],
            Invocation(
                "preview",
                {
                    "config": CONFIG,
                    "context": None,
                    "namespace": "dev",
                    "node_port": None,
                    "cluster": True,
                },
                "json",
            ),
            id="preview",
        ),
        pytest.param(
            ["up", "--timeout", "5"],
            Invocation(
                "up", {"config": CONFIG, "context": None, "namespace": None, "timeout": 5.0}
            ),
            id="up",
        ),
        pytest.param(
            ["down", "--purge", "--format", "json"],
            Invocation(
                "down",
                {"config": CONFIG, "context": None, "namespace": None, "purge": True},
                "json",
            ),
            id="down",
        ),
        pytest.param(
            ["status", "-c", "x/devspace.yaml"],
            Invocation(
                "status", {"config": Path("x/devspace.yaml"), "context": None, "namespace": None}
            ),
            id="status",
        ),
        pytest.param(
            ["build", "app", "--exec", "make deploy"],
            Invocation(
                "build",
                {
                    "config": CONFIG,
                    "context": None,
                    "namespace": None,
                    "keys": ["app"],
                    "exec_command": "make deploy",
                    "timeout": 120.0,
                },
            ),  # fmt: skip
            id="build",
        ),
        pytest.param(
            ["watch", "--detach", "--namespace", "dev"],
            Invocation(
                "watch",
                {
                    "config": CONFIG,
                    "context": None,
                    "namespace": "dev",
                    "detach": True,
                    "debounce": 0.05,
                    "jobs": None,
                    "exec_command": None,
                    "timeout": 120.0,
                },
            ),  # fmt: skip
            id="watch",
        ),
        pytest.param(["stop"], Invocation("stop", {"config": CONFIG}), id="stop"),
        pytest.param(
            ["env", "--image", "app"],
            Invocation("env", {"config": CONFIG, "image": "app"}, "dotenv"),
            id="env-dotenv",
        ),
        pytest.param(
            ["env", "--format", "json"],
            Invocation("env", {"config": CONFIG, "image": None}, "json"),
            id="env-json",
        ),
    ],
)
def test_parse(argv: list[str], expected: Invocation) -> None:
    got = parse(argv)
    assert (got.command, dict(got.options), got.fmt) == (
        expected.command,
        dict(expected.options),
        expected.fmt,
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_options_are_the_commands_keyword_arguments(command: str) -> None:
    """A flag no command parameter takes would be accepted and ignored."""
    module, func = COMMANDS[command]
    parameters = inspect.signature(getattr(importlib.import_module(module), func)).parameters
    assert set(parse([command]).options) == set(parameters)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["stop", "--context", "dev"], "unrecognized arguments", id="stop-context"),
        pytest.param(["stop", "--namespace", "dev"], "unrecognized arguments", id="stop-namespace"),
        pytest.param(["stop", "--format", "json"], "unrecognized arguments", id="stop-format"),
        pytest.param(["env", "--context", "dev"], "unrecognized arguments", id="env-context"),
        pytest.param(["env", "--namespace", "dev"], "unrecognized arguments", id="env-namespace"),
        pytest.param(["env", "--format", "text"], "invalid choice", id="env-format-text"),
        pytest.param(["watch", "--format", "json"], "unrecognized arguments", id="watch-format"),
        pytest.param(
            ["check", "--namespace", "dev"], "unrecognized arguments", id="check-namespace"
        ),
        pytest.param(
            ["preview", "--cluster", "--node-port", "3"], "not allowed with", id="preview"
        ),
    ],
)
def test_flags_a_command_does_not_use_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


ENV_FILE = """\
# Written by devreg: the images the cluster should run. Do not edit.
# Load it with: . ./.devreg.env
export DEVREG_REGISTRY=localhost:31234
export RUNTIME_IMAGES_APP=localhost:31234/app:abc
export RUNTIME_IMAGES_APP_IMAGE=localhost:31234/app
export RUNTIME_IMAGES_APP_TAG=abc
export RUNTIME_IMAGES_DB=localhost:31234/db:def
"""


def test_env_prints_its_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(tmp_path / "devspace.yaml")
    (tmp_path / ".devreg.env").write_text(ENV_FILE)
    assert run(capsys, "env", "-c", config) == (0, ENV_FILE, "")
    rc, out, _ = run(capsys, "env", "-c", config, "--image", "db", "--format", "json")
    assert rc == 0
    doc: dict[str, Any] = json.loads(out)
    assert doc == {
        "DEVREG_REGISTRY": "localhost:31234",
        "RUNTIME_IMAGES_DB": "localhost:31234/db:def",
    }


def test_errors_still_go_through_the_one_handler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(capsys, "env", "-c", str(tmp_path / "devspace.yaml"))
    assert (rc, out) == (1, "")
    assert err == (
        f"devreg: error: {tmp_path / '.devreg.env'}: not written yet; "
        "run `devreg build` or `devreg watch`\n"
    )


def test_stop_without_a_watcher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "stop", "-c", str(tmp_path / "devspace.yaml")) == (
        0,
        "no devreg watcher is running for this project\n",
        "",
    )
