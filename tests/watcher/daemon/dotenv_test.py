from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from hookpkg.errors import FatalError
from watcher.daemon import dotenv

VARS = {
    "RUNTIME_IMAGES_APP": "localhost:31234/org/app:0123abcd",
    "RUNTIME_IMAGES_APP_IMAGE": "localhost:31234/org/app",
    "RUNTIME_IMAGES_APP_TAG": "0123abcd",
    "DEVREG_REGISTRY": "localhost:31234",
}


def test_render_is_sorted_export_lines() -> None:
    text = dotenv.render(VARS)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [f"export {k}={VARS[k]}" for k in sorted(VARS)]
    assert dotenv.parse(text) == VARS


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("X", "a b", id="space"),
        pytest.param("X", "$(rm -rf /)", id="command-substitution"),
        pytest.param("X", "a'b", id="quote"),
        pytest.param("X", "a\nb", id="newline"),
        pytest.param("lower", "ok", id="bad-name"),
    ],
)
def test_unsafe_values_are_refused_not_quoted(name: str, value: str) -> None:
    with pytest.raises(FatalError):
        dotenv.render({name: value})


def test_shells_and_python_dotenv_agree(tmp_path: Path) -> None:
    from dotenv import dotenv_values

    path = tmp_path / ".devreg.env"
    dotenv.write(path, VARS)
    for shell in ("bash", "sh"):
        out = subprocess.run(
            [shell, "-c", ". ./.devreg.env; echo $RUNTIME_IMAGES_APP"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == VARS["RUNTIME_IMAGES_APP"]
    assert dict(dotenv_values(path)) == VARS
    assert json.loads(dotenv.to_json(VARS)) == VARS


def test_a_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / ".devreg.env"
    dotenv.write(path, VARS)
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            text = path.read_text()
            if dotenv.parse(text).keys() != VARS.keys() or not text.endswith("\n"):
                bad.append(text)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(300):
            dotenv.write(path, {**VARS, "RUNTIME_IMAGES_APP_TAG": f"tag{i}"})
    finally:
        stop.set()
        t.join()
    assert bad == []
    assert [p.name for p in tmp_path.iterdir()] == [".devreg.env"]  # no temp files left


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_planted_env_file_is_replaced_without_being_read(tmp_path: Path, kind: str) -> None:
    """Issue 15: a .devreg.env that is a FIFO (a reader would block) or a link to
    /dev/zero (a reader would fill memory) is neither read nor written through."""
    path = tmp_path / ".devreg.env"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    assert dotenv.read(path) == {}
    assert dotenv.write(path, {"RUNTIME_IMAGES_APP": "localhost:31234/app:1"})
    assert path.is_file() and not path.is_symlink()
    assert dotenv.read(path) == {"RUNTIME_IMAGES_APP": "localhost:31234/app:1"}
