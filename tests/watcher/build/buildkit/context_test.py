from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from watcher.build.buildkit.context import MtimeLedger, PackCache, pack
from watcher.build.contenttag import ContextIndex

LONG = "a" * 60 + "/" + "b" * 60 + "/" + "c" * 80 + ".txt"  # > 100 bytes: GNU long name


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    ctx = tmp_path / "ctx"
    (ctx / "src" / "pkg").mkdir(parents=True)
    (ctx / "src" / "main.py").write_text("print('hi')\n")
    (ctx / "src" / "pkg" / "__init__.py").write_text("")
    run = ctx / "run.sh"
    run.write_text("#!/bin/sh\necho run\n")
    run.chmod(0o755)
    (ctx / "link").symlink_to("src/main.py")
    (ctx / "node_modules" / "dep").mkdir(parents=True)
    (ctx / "node_modules" / "dep" / "index.js").write_text("x")
    (ctx / "secret.env").write_text("TOKEN=1")
    (ctx / ".dockerignore").write_text("node_modules\n*.env\n")
    long = ctx / LONG
    long.parent.mkdir(parents=True)
    long.write_text("long")
    # The Dockerfile lives outside the context (SPEC §1: ``dockerfile`` may be anywhere).
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    dockerfile = docker_dir / "app.Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY . /\n")
    return ctx, dockerfile


def files_of(ctx: Path, dockerfile: Path) -> tuple[str, ...]:
    index = ContextIndex(ctx, dockerfile)
    index.scan()
    return index.snapshot().files()


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_layout_and_dockerignore(tree: tuple[Path, Path]) -> None:
    ctx, dockerfile = tree
    packed = pack(ctx, files_of(ctx, dockerfile), dockerfile)
    names = members(packed.data)
    assert packed.dockerfile_name == "app.Dockerfile"
    assert "dockerfile/app.Dockerfile" in names
    assert "context/src/main.py" in names
    assert "context/.dockerignore" in names  # Docker sends it too unless it is ignored
    assert f"context/{LONG}" in names
    assert not any("node_modules" in n or n.endswith(".env") for n in names)
    assert "dockerfile/app.Dockerfile.dockerignore" not in names


def test_modes_links_and_owners(tree: tuple[Path, Path]) -> None:
    ctx, dockerfile = tree
    names = members(pack(ctx, files_of(ctx, dockerfile), dockerfile).data)
    assert names["context/run.sh"].mode & 0o777 == 0o755
    assert names["context/link"].issym()
    assert names["context/link"].linkname == "src/main.py"
    assert names["context/src"].isdir()
    assert {(m.uid, m.gid, m.uname, m.gname) for m in names.values()} == {(0, 0, "", "")}


def test_counts(tree: tuple[Path, Path]) -> None:
    ctx, dockerfile = tree
    packed = pack(ctx, files_of(ctx, dockerfile), dockerfile)
    # .dockerignore, run.sh, link, main.py, __init__.py, the long file, the Dockerfile
    assert packed.files == packed.total_files == 7
    assert packed.full
    assert (
        packed.size
        == sum((ctx / f).stat().st_size for f in (".dockerignore", "run.sh", "src/main.py", LONG))
        + dockerfile.stat().st_size
    )


def test_against_a_manifest_only_changes_travel(tree: tuple[Path, Path]) -> None:
    ctx, dockerfile = tree
    files = files_of(ctx, dockerfile)
    ledger, cache = MtimeLedger(), PackCache()
    first = pack(ctx, files, dockerfile, ledger=ledger, cache=cache)
    same = pack(ctx, files, dockerfile, ledger=ledger, cache=cache, previous=first.manifest)
    assert (same.full, same.files, same.size) == (False, 0, 0)
    assert same.manifest == first.manifest
    (ctx / "src" / "main.py").write_text("print('changed, and longer')\n")
    changed = pack(ctx, files, dockerfile, ledger=ledger, cache=cache, previous=first.manifest)
    names = members(changed.data)
    assert not changed.full
    assert changed.files == 1 and changed.total_files == 7
    files_sent = {n for n, m in names.items() if not m.isdir()}
    assert files_sent == {"context/src/main.py"}
    # A changed Dockerfile travels too.
    dockerfile.write_text("FROM scratch\nCOPY src /src\n")
    df = pack(ctx, files, dockerfile, ledger=ledger, cache=cache, previous=changed.manifest)
    assert {n for n, m in members(df.data).items() if not m.isdir()} == {
        "dockerfile/app.Dockerfile"
    }


@pytest.mark.parametrize(
    "change",
    [
        pytest.param("remove", id="removed-file"),
        pytest.param("file-to-dir", id="file-became-directory"),
    ],
)
def test_removal_or_type_change_sends_everything(tree: tuple[Path, Path], change: str) -> None:
    ctx, dockerfile = tree
    first = pack(ctx, files_of(ctx, dockerfile), dockerfile)
    (ctx / "run.sh").unlink()
    if change == "file-to-dir":
        (ctx / "run.sh").mkdir()
        (ctx / "run.sh" / "inner").write_text("i")
    again = pack(ctx, files_of(ctx, dockerfile), dockerfile, previous=first.manifest)
    assert again.full
    assert again.files == again.total_files


def test_dockerfile_specific_ignore_travels_beside_the_dockerfile(
    tree: tuple[Path, Path],
) -> None:
    ctx, dockerfile = tree
    # It wins over context/.dockerignore (BuildKit's rule): secret.env is kept.
    dockerfile.with_name("app.Dockerfile.dockerignore").write_text("node_modules\n")
    names = members(pack(ctx, files_of(ctx, dockerfile), dockerfile).data)
    assert "dockerfile/app.Dockerfile.dockerignore" in names
    assert "context/secret.env" in names


def test_vanished_file_is_skipped(tree: tuple[Path, Path]) -> None:
    ctx, dockerfile = tree
    files = files_of(ctx, dockerfile)
    (ctx / "src" / "main.py").unlink()
    names = members(pack(ctx, files, dockerfile).data)
    assert "context/src/main.py" not in names
    assert "context/src/pkg/__init__.py" in names


def test_symlinked_dockerfile_sends_its_bytes(tree: tuple[Path, Path]) -> None:
    ctx, dockerfile = tree
    link = ctx / "Dockerfile"
    link.symlink_to(dockerfile)
    data = pack(ctx, (), link).data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember("dockerfile/Dockerfile")
        assert member.isreg()
        extracted = tar.extractfile(member)
        assert extracted is not None
        assert extracted.read() == dockerfile.read_bytes()


@pytest.mark.parametrize(
    "tar_cmd",
    [
        pytest.param(("tar",), id="gnu-tar"),
        # The buildkitd sidecar image is Alpine: busybox's tar unpacks there.
        pytest.param(("busybox", "tar"), id="busybox-tar"),
    ],
)
def test_real_tar_unpacks_it(
    tree: tuple[Path, Path], tmp_path: Path, tar_cmd: tuple[str, ...]
) -> None:
    if shutil.which(tar_cmd[0]) is None:
        pytest.skip(f"{tar_cmd[0]} is not installed")
    ctx, dockerfile = tree
    out = tmp_path / "out"
    out.mkdir()
    data = pack(ctx, files_of(ctx, dockerfile), dockerfile).data
    subprocess.run([*tar_cmd, "-x", "-f", "-", "-C", str(out)], input=data, check=True)
    assert (out / "context" / LONG).read_text() == "long"
    assert os.readlink(out / "context" / "link") == "src/main.py"
    assert (out / "context" / "run.sh").stat().st_mode & 0o111
    assert (out / "dockerfile" / "app.Dockerfile").read_bytes() == dockerfile.read_bytes()


def test_ledger_moves_a_colliding_mtime_and_keeps_a_repeated_one() -> None:
    ledger = MtimeLedger()
    assert ledger.mtime_for("context/a", 4, 100, b"v1") == 100
    assert ledger.mtime_for("context/a", 4, 100, b"v1") == 100  # same bytes: same stat
    assert ledger.mtime_for("context/a", 4, 100, b"v2") == 101  # same second and size
    assert ledger.mtime_for("context/a", 4, 100, b"v3") == 102
    assert ledger.mtime_for("context/a", 4, 100, b"v2") == 101  # remembered
    assert ledger.mtime_for("context/a", 5, 100, b"v4") == 100  # another size differs anyway
    assert ledger.mtime_for("context/b", 4, 100, b"v9") == 100  # another path


def test_same_second_same_size_edit_travels_under_another_mtime(tree: tuple[Path, Path]) -> None:
    ctx, dockerfile = tree
    target = ctx / "src" / "main.py"
    files = files_of(ctx, dockerfile)
    ledger = MtimeLedger()
    target.write_text("print('A')\n")
    os.utime(target, ns=(1_700_000_000_100_000_000, 1_700_000_000_100_000_000))
    first = members(pack(ctx, files, dockerfile, ledger=ledger).data)["context/src/main.py"]
    target.write_text("print('B')\n")  # same size, same whole second
    os.utime(target, ns=(1_700_000_000_900_000_000, 1_700_000_000_900_000_000))
    packed = pack(ctx, files, dockerfile, ledger=ledger)
    second = members(packed.data)["context/src/main.py"]
    assert first.mtime == 1_700_000_000
    assert second.mtime == 1_700_000_001
    assert packed.moved_mtimes == 1
    # Nothing changed: the stat repeats, so buildkitd need not receive it again.
    again = members(pack(ctx, files, dockerfile, ledger=ledger).data)["context/src/main.py"]
    assert again.mtime == second.mtime
