"""``python -m watcher``: ``main``'s exit code becomes the process's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOOD = "version: v2beta1\nlocalRegistry:\n  enabled: true\nimages:\n  app:\n    image: ghcr.io/org/app\n"
BAD = "version: v2beta1\nlocalRegistry:\n  locaBuild: true\n  port: 70000\n"


@pytest.mark.parametrize(
    ("content", "args", "code", "says"),
    [
        pytest.param(GOOD, (), 0, "image app: local-registry", id="ok"),
        pytest.param(BAD, (), 1, "unknown key 'locaBuild'", id="config-error"),
        pytest.param(GOOD, ("--bogus",), 2, "unrecognized arguments", id="usage-error"),
    ],
)
def test_exit_codes(
    tmp_path: Path, content: str, args: tuple[str, ...], code: int, says: str
) -> None:
    (tmp_path / "devspace.yaml").write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "watcher", "check", *args, str(tmp_path / "devspace.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == code, proc.stderr
    assert says in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
