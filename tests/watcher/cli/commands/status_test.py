"""``devreg status`` on a state directory it did not write (issue 15): a status file
of the wrong shape is reported as it can be, never trusted and never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "saved",
    [
        pytest.param([1, 2, 3], id="a-list"),
        pytest.param({"images": [1, 2]}, id="images-a-list"),
        pytest.param({"images": {"app": "ok"}}, id="an-image-a-string"),
        pytest.param({"images": {"app": {"state": 5, "last_error_tail": "x"}}}, id="odd-fields"),
        pytest.param({"config_errors": "oops", "exec": 5, "updated": "yesterday"}, id="odd-top"),
        pytest.param({"exec": {"state": [], "last": "x"}}, id="odd-exec"),
    ],
)
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_status_file_of_the_wrong_shape_is_no_traceback(
    tmp_path: Path, saved: object, fmt: str
) -> None:
    (tmp_path / "devspace.yaml").write_text("version: v2beta1\nimages: {}\n")
    (tmp_path / ".devreg").mkdir()
    (tmp_path / ".devreg" / "status.json").write_text(json.dumps(saved))
    done = subprocess.run(
        [sys.executable, "-m", "watcher", "status", "-o", fmt],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
        timeout=60,
    )
    assert done.returncode == 1, done.stderr  # no watcher, no cluster: cannot tell
    assert "Traceback" not in done.stderr
    if fmt == "json":
        json.loads(done.stdout)
