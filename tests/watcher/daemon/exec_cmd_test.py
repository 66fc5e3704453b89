"""``--exec CMD`` (watcher/daemon/exec_cmd.py) with real ``/bin/sh`` processes and a
real ``.devreg.env``: the environment CMD gets, its output in the log, a
failing run, runs that wait for a slow one and take the newest variables,
skipped runs, and stopping a run with everything it started."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.watcher.e2e import group_members, processes_mentioning, wait_for
from watcher.cli.main import main
from watcher.daemon import dotenv
from watcher.daemon.exec_cmd import ExecCommand, exec_argv, exec_env


def write_env(project: Path, tag: str) -> None:
    dotenv.write(
        project / dotenv.ENV_FILE,
        {
            "RUNTIME_IMAGES_APP": f"localhost:31234/acme/app:{tag}",
            "RUNTIME_IMAGES_APP_TAG": tag,
            "DEVREG_REGISTRY": "localhost:31234",
        },
    )


Make = Callable[..., ExecCommand]


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    write_env(root, "aaaa")
    return root


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def make(project: Path, log: Log) -> Iterator[Make]:
    made: list[ExecCommand] = []

    def factory(command: str, **kw: object) -> ExecCommand:
        runner = ExecCommand(
            command,
            directory=project,
            env_file=project / dotenv.ENV_FILE,
            log=log,
            grace=0.5,
            **kw,  # type: ignore[arg-type]
        )
        made.append(runner)
        return runner

    yield factory
    for runner in made:
        runner.close()


def test_argv_and_environment_are_plain_values(tmp_path: Path) -> None:
    assert exec_argv("helm upgrade app ./chart") == ("/bin/sh", "-c", "helm upgrade app ./chart")
    env = exec_env(
        {"PATH": "/bin", "RUNTIME_IMAGES_APP": "stale"},
        {"RUNTIME_IMAGES_APP": "new"},
        ["web", "app", "app"],
        tmp_path / ".devreg.env",
    )
    assert env == {
        "PATH": "/bin",
        "RUNTIME_IMAGES_APP": "new",  # .devreg.env wins over the inherited environment
        "DEVREG_IMAGES": "app web",
        "DEVREG_ENV_FILE": str(tmp_path / ".devreg.env"),
    }


def test_a_run_sees_the_variables_and_runs_in_the_project(
    project: Path, log: Log, make: Make
) -> None:
    out = project.parent / "seen"
    command = (
        f'echo "$RUNTIME_IMAGES_APP $DEVREG_IMAGES $DEVREG_ENV_FILE $HOME" > {out}; '
        "pwd; echo to-stderr >&2"
    )
    result = make(command).run(["app"])
    assert result.ok and result.returncode == 0 and not result.cancelled
    assert out.read_text() == (
        f"localhost:31234/acme/app:aaaa app {project / '.devreg.env'} {os.environ['HOME']}\n"
    )
    assert f"[exec] running `{command}` (images: app)" in log
    # Both output streams go to the log, line by line, prefixed; none to the terminal.
    assert f"[exec] {project}" in log and "[exec] to-stderr" in log
    assert result.tail == (str(project), "to-stderr")
    assert any(line.startswith(f"[exec] `{command}` exited 0 after ") for line in log)


def test_a_failing_run_is_recorded_with_its_last_lines(project: Path, log: Log, make: Make) -> None:
    runner = make("for i in $(seq 1 30); do echo line$i; done; echo boom >&2; exit 3")
    result = runner.run(["app"])
    assert not result.ok and result.returncode == 3
    assert result.outcome() == "exited 3"
    assert result.tail[-1] == "boom" and len(result.tail) == 20  # the last 20 lines
    status = runner.status()
    assert (status["state"], status["runs"], status["failures"]) == ("failed", 1, 1)
    assert status["last"]["exit_code"] == 3 and status["last"]["tail"][-1] == "boom"
    assert any(line.startswith("[exec] FAILED: `for i in") for line in log)
    killed = make("kill -9 $$").run(["app"])
    assert killed.outcome() == "killed by SIGKILL"


def test_a_delivery_during_a_slow_run_waits_and_the_next_run_has_the_newest_variables(
    project: Path, log: Log, make: Make
) -> None:
    """Wait, don't cancel: the running CMD (a deploy) finishes; the
    deliveries that came meanwhile make one more run, with the newest
    .devreg.env."""
    runs = project.parent / "runs"
    gate = project.parent / "gate"
    runner = make(
        f'echo "start $RUNTIME_IMAGES_APP_TAG $DEVREG_IMAGES" >> {runs}; '
        f"while [ ! -e {gate} ]; do sleep 0.02; done; "
        f'echo "end $RUNTIME_IMAGES_APP_TAG" >> {runs}'
    )
    runner.start()
    runner.submit(["app"])
    wait_for(lambda: runs.exists() and runs.read_text(), what="the first run to start")
    write_env(project, "bbbb")
    runner.submit(["app"])
    write_env(project, "cccc")
    runner.submit(["web"])
    status = runner.status()
    assert status["state"] == "running" and status["pending"]
    gate.touch()
    wait_for(lambda: runner.status()["runs"] == 2, what="the second run")
    assert runs.read_text().splitlines() == [
        "start aaaa app",
        "end aaaa",
        "start cccc app web",  # bbbb was never deployed: cccc had replaced it
        "end cccc",
    ]
    status = runner.status()
    assert (status["state"], status["pending"], status["failures"]) == ("ok", False, 0)


def test_unchanged_variables_skip_the_run_but_a_failed_run_is_retried(
    project: Path, log: Log, make: Make
) -> None:
    runs = project.parent / "runs"
    fail = project.parent / "fail"
    runner = make(f'echo "$RUNTIME_IMAGES_APP_TAG" >> {runs}; [ ! -e {fail} ]')
    runner.start()
    runner.submit(["app"])
    wait_for(lambda: runner.status()["runs"] == 1, what="the first run")
    runner.submit(["app"])  # same .devreg.env: a re-push, a config edit
    wait_for(lambda: runner.status()["skipped"] == 1, what="the skipped run")
    assert "[exec] variables unchanged since the last successful run; not running" in (
        " ".join(log)
    )
    fail.touch()
    write_env(project, "bbbb")
    runner.submit(["app"])
    wait_for(lambda: runner.status()["failures"] == 1, what="the failing run")
    fail.unlink()
    runner.submit(["app"])  # same variables, but the last run with them failed
    wait_for(lambda: runner.status()["runs"] == 3, what="the retry")
    assert runs.read_text().splitlines() == ["aaaa", "bbbb", "bbbb"]
    assert runner.status()["state"] == "ok"


def test_close_stops_a_running_command_and_everything_it_started(
    project: Path, log: Log, make: Make
) -> None:
    started = project.parent / "started"
    # A child that ignores SIGTERM, in the background, and the shell waiting.
    runner = make(f"(trap '' TERM; sleep 600) & echo $! > {started}; wait")
    runner.start()
    runner.submit(["app"])
    pid = int(wait_for(lambda: started.exists() and started.read_text().strip(), what="start"))
    pgid = os.getpgid(pid)
    assert pgid != os.getpgrp()  # its own process group
    runner.close()
    wait_for(lambda: not group_members(pgid), timeout=10, what="the group to end")
    assert not processes_mentioning(str(project))
    status = runner.status()
    assert status["state"] == "stopped" and status["last"]["cancelled"]
    assert status["last"]["outcome"] == "stopped with devreg"


@pytest.mark.parametrize("command", ["watch", "build"])
def test_an_empty_command_is_a_usage_error(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--exec", " "]) == 2
    assert "--exec needs a command" in capsys.readouterr().err
