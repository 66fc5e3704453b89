"""The command line: each flag is registered on the commands that use it,
the parsed options are exactly the command's keyword arguments, and ``main``
prints the command's result and exits with its code. No cluster needed."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from watcher.cli.errors import run_command
from watcher.cli.main import COMMANDS, RUNTIME_COMMANDS, Invocation, main, parse

CONFIG = Path("devspace.yaml")
NO_PROFILE = {"profiles": [], "profile_activation": True}  # no -p; activation on


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
                    "profiles": [],
                    "profile_activation": True,
                },
                "json",
            ),
            id="preview",
        ),
        pytest.param(
            ["up", "--timeout", "5"],
            Invocation(
                "up",
                {
                    "config": CONFIG,
                    "context": None,
                    "namespace": None,
                    "timeout": 5.0,
                    "probe": True,
                    "profiles": [],
                    "profile_activation": True,
                },
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
                "status",
                {
                    "config": Path("x/devspace.yaml"),
                    "context": None,
                    "namespace": None,
                    "probe": True,
                },
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
                    "profiles": [],
                    "profile_activation": True,
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
                    "profiles": [],
                    "profile_activation": True,
                },
            ),  # fmt: skip
            id="watch",
        ),
        pytest.param(["stop"], Invocation("stop", {"config": CONFIG}), id="stop"),
        pytest.param(
            ["env", "--image", "app"],
            Invocation("env", {"config": CONFIG, "image": "app", **NO_PROFILE}, "dotenv"),
            id="env-dotenv",
        ),
        pytest.param(
            ["env", "--format", "json"],
            Invocation("env", {"config": CONFIG, "image": None, **NO_PROFILE}, "json"),
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


# --- the field's habits: -n, -o, --kubeconfig, -q/-v, --color, --version ----------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["preview", "-n", "dev"], ("namespace", "dev"), id="short-namespace"),
        pytest.param(["preview", "-o", "json"], ("fmt", "json"), id="short-output"),
        pytest.param(["up", "--output", "json"], ("fmt", "json"), id="long-output"),
        pytest.param(["status", "--format", "json"], ("fmt", "json"), id="format-alias"),
        pytest.param(["env", "-o", "json"], ("fmt", "json"), id="env-output"),
        pytest.param(["build", "-q"], ("verbosity", -1), id="quiet"),
        pytest.param(["watch", "--verbose"], ("verbosity", 1), id="verbose"),
        pytest.param(["stop"], ("verbosity", 0), id="default-verbosity"),
        pytest.param(["check", "--color", "always"], ("color", "always"), id="color"),
        pytest.param(["check"], ("color", "auto"), id="default-color"),
        pytest.param(
            ["down", "--kubeconfig", "k.yaml"], ("kubeconfig", Path("k.yaml")), id="kubeconfig"
        ),
    ],
)
def test_field_habits_parse(argv: list[str], expected: tuple[str, Any]) -> None:
    got = parse(argv)
    field, value = expected
    if field == "fmt":
        assert got.fmt == value
    elif field == "kubeconfig":
        assert got.kubeconfig == value
    elif field in ("verbosity", "color"):
        assert getattr(got.console, field) == value
    else:
        assert got.options[field] == value


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["build", "-q", "-v"], id="quiet-and-verbose"),
        pytest.param(["check", "--color", "sometimes"], id="color-choice"),
        pytest.param(["env", "--kubeconfig", "k"], id="env-kubeconfig"),
        pytest.param(["stop", "-n", "dev"], id="stop-namespace"),
        pytest.param(["watch", "-o", "json"], id="watch-output"),
        # nan would make the watcher wait on its queue forever (issue 15)
        pytest.param(["watch", "--debounce", "nan"], id="debounce-nan"),
        pytest.param(["up", "--timeout", "nan"], id="timeout-nan"),
        pytest.param(["build", "--timeout", "inf"], id="timeout-inf"),
        pytest.param(["watch", "--debounce", "-1"], id="debounce-negative"),
    ],
)
def test_field_habits_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().out == ""


def test_version_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """``$(devreg --version)`` is not empty; the version is hookpkg's, the one place."""
    from hookpkg import __version__

    for flag in ("--version", "-V"):
        assert run(capsys, flag) == (0, f"devreg {__version__}\n", "")


def test_the_package_metadata_reads_the_same_version() -> None:
    """setuptools' dynamic version (pyproject.toml) comes from hookpkg.__version__."""
    from importlib.metadata import version

    from hookpkg import __version__

    assert version("devreg") == __version__


KUBECONFIG = """\
apiVersion: v1
current-context: gke
contexts:
- {name: gke, context: {cluster: c}}
- {name: kind-dev, context: {cluster: c}}
clusters:
- {name: c, cluster: {server: 'https://127.0.0.1:1'}}
"""


def test_kubeconfig_flag_is_the_kubeconfig_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--kubeconfig wins over $KUBECONFIG (here a file naming no kind context)."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    (tmp_path / "kc.yaml").write_text(KUBECONFIG)
    (tmp_path / "devspace.yaml").write_text("images:\n  app:\n    image: ghcr.io/org/app\n")
    config = str(tmp_path / "devspace.yaml")
    rc, out, _ = run(capsys, "check", config, "--context", "kind-dev")
    assert rc == 0 and "image app: local-registry-if-refused" in out  # kind-dev unknown
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run(capsys, "check", config, "--context", "kind-dev", "--kubeconfig", "kc.yaml")
    assert rc == 0 and "image app: kind-load (kind cluster dev)" in out
    assert os.environ["KUBECONFIG"] == str(tmp_path / "kc.yaml")  # absolute, for what it runs


def test_kubeconfig_flag_naming_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(
        capsys, "check", str(tmp_path / "devspace.yaml"), "--kubeconfig", str(tmp_path / "no")
    )
    assert (rc, out) == (2, "")
    assert err == f"devreg: error: --kubeconfig {tmp_path / 'no'}: no such file\n"


BAD = "localRegistry:\n  port: 70000\n"


@pytest.mark.parametrize(
    ("argv", "environ", "colored"),
    [
        pytest.param([], {}, False, id="auto-not-a-terminal"),
        pytest.param(["--color", "always"], {}, True, id="always"),
        pytest.param(["--color", "always"], {"NO_COLOR": "1"}, True, id="flag-beats-NO_COLOR"),
        pytest.param(["--color", "never"], {}, False, id="never"),
    ],
)
def test_check_colors_errors(
    argv: list[str],
    environ: dict[str, str],
    colored: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "devspace.yaml").write_text(BAD)
    rc, out, _ = run(capsys, "check", str(tmp_path / "devspace.yaml"), *argv)
    assert rc == 1
    assert ("\033[31m\033[1merror\033[0m: localRegistry.port" in out) is colored
    assert ("\033[" in out) is colored


class _Tty:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("setting", "tty", "environ", "expected"),
    [
        pytest.param("auto", True, {}, True, id="terminal"),
        pytest.param("auto", False, {}, False, id="pipe"),
        pytest.param("auto", True, {"NO_COLOR": "1"}, False, id="NO_COLOR"),
        pytest.param("auto", True, {"NO_COLOR": ""}, True, id="NO_COLOR-empty-is-unset"),
        pytest.param("auto", True, {"TERM": "dumb"}, False, id="dumb-terminal"),
        pytest.param("always", False, {"NO_COLOR": "1"}, True, id="always"),
        pytest.param("never", True, {}, False, id="never"),
    ],
)
def test_use_color(setting: str, tty: bool, environ: dict[str, str], expected: bool) -> None:
    from watcher.console import use_color

    assert use_color(setting, _Tty(tty), environ) is expected  # type: ignore[arg-type]


def test_quiet_check_keeps_the_errors_and_drops_the_preview(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "devspace.yaml"
    good.write_text("images:\n  app:\n    image: ghcr.io/org/app\n")
    assert run(capsys, "check", str(good), "-q") == (0, "", "")
    (tmp_path / "devspace-bad.yaml").write_text(BAD)
    rc, out, _ = run(capsys, "check", str(good), str(tmp_path / "devspace-bad.yaml"), "-q")
    assert rc == 1
    assert "localRegistry.port: 70000 is out of range" in out and "preview" not in out


def test_quiet_status_says_it_by_its_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No kubeconfig and no watcher: status cannot tell anything, and exits 1."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    (tmp_path / "devspace.yaml").write_text("images:\n  app:\n    image: ghcr.io/org/app\n")
    config = str(tmp_path / "devspace.yaml")
    rc, out, _ = run(capsys, "status", "-c", config)
    assert rc == 1
    assert out.splitlines()[0].startswith("registry: cannot tell (no kubeconfig found")
    assert "watcher: not running" in out
    assert run(capsys, "status", "-c", config, "-q") == (1, "", "")


def test_verbose_shows_the_api_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """-v: each API request devreg makes, as kubectl -v=6 shows them (here one that
    finds nothing listening)."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"kind":"Status","code":404,"reason":"NotFound","message":"not found"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        (tmp_path / "kc.yaml").write_text(
            KUBECONFIG.replace("https://127.0.0.1:1", f"http://127.0.0.1:{port}")
        )
        (tmp_path / "devspace.yaml").write_text("images:\n  app:\n    image: ghcr.io/org/app\n")
        argv = ["status", "-c", str(tmp_path / "devspace.yaml")]
        argv += ["--kubeconfig", str(tmp_path / "kc.yaml")]
        monkeypatch.setenv("KUBECONFIG", "")
        _, _, quiet_err = run(capsys, *argv)
        monkeypatch.setenv("KUBECONFIG", "")
        _, _, err = run(capsys, *argv, "-v")
    finally:
        server.shutdown()
        server.server_close()
    assert f"GET http://127.0.0.1:{port}/api/v1/namespaces/kube-public/configmaps/" in err
    assert " 404 in " in err
    assert "GET " not in quiet_err


# --- without the runtime extra ---------------------------------------------------------

# What `pip install devreg` (no extra) leaves out, made unimportable in a child
# Python: the tests' own environment has the extra (a real venv without it:
# tests/precommit_hooks_test.py, in pre-commit's hook environment).
WITHOUT_RUNTIME = """\
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in ('docker', 'kubernetes', 'watchdog', 'requests'):
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
from watcher.cli.main import main
raise SystemExit(main(sys.argv[1:]))
"""


def devreg_without_runtime(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_RUNTIME, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3]), "KUBECONFIG": ""},
    )


@pytest.mark.parametrize("command", sorted(RUNTIME_COMMANDS))
def test_runtime_command_without_the_extra(tmp_path: Path, command: str) -> None:
    (tmp_path / "devspace.yaml").write_text("images:\n  app:\n    image: ghcr.io/org/app\n")
    done = devreg_without_runtime(tmp_path, command)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"devreg: error: devreg {command} needs devreg's runtime, which is not installed "
        "(missing: docker, kubernetes, watchdog, requests); "
        "install it with: pip install 'devreg[runtime]'\n"
    )


def test_hook_commands_without_the_extra(tmp_path: Path) -> None:
    (tmp_path / "devspace.yaml").write_text("images:\n  app:\n    image: ghcr.io/org/app\n")
    for argv in (["check"], ["preview"], ["preview", "--node-port", "31234"]):
        done = devreg_without_runtime(tmp_path, *argv)
        assert done.returncode == 0, done.stderr
        assert "image app: local-registry-if-refused" in done.stdout


def test_a_runtime_import_deeper_down_says_the_same() -> None:
    """A lazy import that fails mid-command (no traceback, the pip line)."""

    def reaches_for_the_client() -> int:
        raise ModuleNotFoundError("No module named 'kubernetes'", name="kubernetes.stream")

    assert run_command(reaches_for_the_client) == 1


def test_a_missing_module_of_devreg_itself_is_a_bug(capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> int:
        raise ModuleNotFoundError("No module named 'watcher.gone'", name="watcher.gone")

    assert run_command(broken) == 3
    assert "internal error" in capsys.readouterr().err
