"""Reading a config and its imports: only regular files, within the limits,
imports followed without recursion and at most MAX_IMPORTS of them."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from hookpkg import bounds
from hookpkg.config import load
from hookpkg.errors import FatalError


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()
    return tmp_path


def warnings(loaded: object) -> list[tuple[str, int, int, str, str]]:
    return [
        (Path(d.file).name, d.line, d.col, d.path, d.message)
        for d in loaded.diagnostics  # type: ignore[attr-defined]
        if d.severity == "warning"
    ]


def test_a_chain_of_1000_imports_stops_at_the_bound(repo: Path) -> None:
    for i in range(1000):
        (repo / f"i{i}.yaml").write_text(
            f"imports:\n- path: i{i + 1}.yaml\nimages:\n  k{i}: {{image: a/b}}\n"
        )
    (repo / "devspace.yaml").write_text("version: v2beta1\nimports:\n- path: i0.yaml\n")
    loaded = load(repo / "devspace.yaml", env={})
    assert len(loaded.sources) == 1 + bounds.MAX_IMPORTS
    assert len(loaded.images) == bounds.MAX_IMPORTS
    (warning,) = warnings(loaded)
    assert warning[:4] == (f"i{bounds.MAX_IMPORTS - 1}.yaml", 2, 9, "imports[0].path")
    assert f"more than {bounds.MAX_IMPORTS} imported files" in warning[4]


def test_imports_are_followed_depth_first_and_the_importing_file_wins(repo: Path) -> None:
    (repo / "a.yaml").write_text("imports:\n- path: a2.yaml\nimages:\n  x: {image: from/a}\n")
    (repo / "a2.yaml").write_text("images:\n  x: {image: from/a2}\n  y: {image: from/a2}\n")
    (repo / "b.yaml").write_text("images:\n  y: {image: from/b}\n  z: {image: from/b}\n")
    (repo / "devspace.yaml").write_text(
        "imports:\n- path: a.yaml\n- path: b.yaml\n- path: devspace.yaml\n"
    )
    loaded = load(repo / "devspace.yaml", env={})
    assert [s.path.name for s in loaded.sources] == ["devspace.yaml", "a.yaml", "a2.yaml", "b.yaml"]
    images = {k: n.get("image").value for k, (_, n) in loaded.images.items()}  # type: ignore[union-attr]
    assert images == {"x": "from/a", "y": "from/a2", "z": "from/b"}


def test_a_fifo_import_never_blocks(repo: Path) -> None:
    os.mkfifo(repo / "fifo.yaml")
    (repo / "devspace.yaml").write_text("imports:\n- path: fifo.yaml\n")
    box: list[object] = []
    t = threading.Thread(
        target=lambda: box.append(load(repo / "devspace.yaml", env={})), daemon=True
    )
    t.start()
    t.join(10)
    assert not t.is_alive(), "blocked on the FIFO"
    (warning,) = warnings(box[0])
    assert warning[:4] == ("devspace.yaml", 2, 9, "imports[0].path")
    assert "is a FIFO (named pipe), not a regular file" in warning[4]


@pytest.mark.parametrize(
    ("target", "words"),
    [
        pytest.param("/dev/zero", "outside the repository", id="dev-zero"),
        pytest.param("/dev/urandom", "outside the repository", id="dev-urandom"),
        pytest.param("sub", "is a directory", id="directory"),
    ],
)
def test_import_of_what_is_not_a_file(repo: Path, target: str, words: str) -> None:
    (repo / "sub").mkdir()
    (repo / "link.yaml").symlink_to(target)
    (repo / "devspace.yaml").write_text("imports:\n- path: link.yaml\n- path: /dev/zero\n")
    loaded = load(repo / "devspace.yaml", env={})
    found = warnings(loaded)
    assert [w[1:4] for w in found] == [(2, 9, "imports[0].path"), (3, 9, "imports[1].path")]
    assert words in found[0][4]
    assert "outside the repository" in found[1][4]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('"a\\0b.yaml"', id="nul-in-path"),
        pytest.param("x" * 5000 + ".yaml", id="name-too-long"),
        pytest.param("loop.yaml", id="symlink-loop"),
    ],
)
def test_import_paths_that_cannot_be_files(repo: Path, raw: str) -> None:
    (repo / "loop.yaml").symlink_to(repo / "loop.yaml")
    (repo / "devspace.yaml").write_text(f"imports:\n- path: {raw}\n")
    loaded = load(repo / "devspace.yaml", env={})
    assert [w[3] for w in warnings(loaded)] == ["imports[0].path"]


def test_main_file_past_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "devspace.yaml"
    path.write_text("a: " + "x" * (2 << 20) + "\n")
    with pytest.raises(FatalError) as e:
        load(path, display="devspace.yaml", env={})
    assert e.value.exit_code == 2
    assert str(e.value) == (
        "devspace.yaml: the file is 2 MiB, larger than the 1 MiB limit; set DEVREG_MAX_FILE_SIZE "
        "(for example DEVREG_MAX_FILE_SIZE=8M) to check it anyway"
    )
    assert load(path, env={"DEVREG_MAX_FILE_SIZE": "3M"}).main is not None


def test_bad_size_setting_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "devspace.yaml"
    path.write_text("a: 1\n")
    with pytest.raises(FatalError) as e:
        load(path, env={"DEVREG_MAX_FILE_SIZE": "big"})
    assert e.value.exit_code == 2
    assert "DEVREG_MAX_FILE_SIZE='big' is not a size" in str(e.value)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory"])
def test_main_file_that_is_not_regular(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "devspace.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(kind)
    with pytest.raises(FatalError) as e:
        load(path, display="devspace.yaml", env={})
    assert e.value.exit_code == 2
    assert "not a regular file" in str(e.value)
