"""watcher/cli/errors.py: the one place that turns exceptions into exit codes."""

from __future__ import annotations

import pytest

from hookpkg.errors import FatalError
from watcher.cli.errors import run_command


def raising(error: BaseException) -> int:
    raise error


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        pytest.param(FatalError("the config has errors"), 1, "the config has errors", id="fatal"),
        pytest.param(FatalError("no such file", exit_code=2), 2, "no such file", id="fatal-usage"),
        pytest.param(KeyboardInterrupt(), 130, "interrupted", id="interrupted"),
        # a read-only .devreg (issue 15): which file, not a traceback
        pytest.param(
            PermissionError(13, "Permission denied", "/p/.devreg/status.json"),
            2,
            "cannot write or read /p/.devreg/status.json: Permission denied",
            id="read-only-state",
        ),
        pytest.param(ZeroDivisionError("a bug"), 3, "internal error", id="bug"),
    ],
)
def test_exit_codes_and_messages(
    error: BaseException, code: int, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_command(lambda: raising(error)) == code
    err = capsys.readouterr().err
    assert words in err
    assert ("Traceback" in err) == (code == 3)
