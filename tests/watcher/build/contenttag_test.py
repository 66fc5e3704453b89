from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from watcher.build.contenttag import ContextIndex, DigestCache, content_tag


def _tree(root: Path) -> None:
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("print('a')\n")
    (root / "src" / "b.py").write_text("print('b')\n")
    (root / "big.bin").write_bytes(os.urandom(3 << 20))  # goes through the pool
    (root / "node_modules" / "x").mkdir(parents=True)
    (root / "node_modules" / "x" / "i.js").write_text("x")
    (root / ".dockerignore").write_text("node_modules\n")
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")


def _tag(root: Path, *, args: dict[str, str] | None = None, target: str | None = None) -> str:
    index = ContextIndex(root, root / "Dockerfile")
    index.scan()
    return content_tag(
        dockerfile_bytes=(root / "Dockerfile").read_bytes(),
        context_digest=index.digest(),
        build_args=args or {},
        target=target,
    )


def _edit_file(root: Path) -> None:
    (root / "src" / "a.py").write_text("print('A')\n")


def _touch(root: Path) -> None:
    os.utime(root / "src" / "a.py", ns=(1, 1))


def _chmod(root: Path) -> None:
    (root / "src" / "a.py").chmod(0o755)


def _ignored(root: Path) -> None:
    (root / "node_modules" / "x" / "i.js").write_text("changed")


def _new_file(root: Path) -> None:
    (root / "src" / "c.py").write_text("")


def _dockerfile(root: Path) -> None:
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /app\n")


def _rewrite_same(root: Path) -> None:
    (root / "src" / "a.py").write_text("print('a')\n")


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        pytest.param(_edit_file, True, id="content-edit"),
        pytest.param(_touch, False, id="touch"),
        pytest.param(_rewrite_same, False, id="save-without-edits"),
        pytest.param(_chmod, True, id="mode"),
        pytest.param(_ignored, False, id="ignored-file"),
        pytest.param(_new_file, True, id="new-empty-file"),
        pytest.param(_dockerfile, True, id="dockerfile"),
    ],
)
def test_tag_changes_only_with_build_inputs(tmp_path: Path, change: object, differs: bool) -> None:
    _tree(tmp_path)
    before = _tag(tmp_path)
    assert callable(change)
    change(tmp_path)
    assert (_tag(tmp_path) != before) is differs


def test_build_args_and_target_count(tmp_path: Path) -> None:
    _tree(tmp_path)
    base = _tag(tmp_path)
    assert _tag(tmp_path, args={"A": "1"}) != base
    assert _tag(tmp_path, target="dev") != base
    assert _tag(tmp_path) == base


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: (r / "src" / "a.py").write_text("new"), id="edit"),
        pytest.param(lambda r: (r / "src" / "a.py").unlink(), id="delete"),
        pytest.param(lambda r: (r / "src").rename(r / "lib"), id="move-dir"),
        pytest.param(lambda r: (r / "node_modules" / "y.js").write_text("y"), id="ignored"),
        pytest.param(lambda r: (r / ".dockerignore").write_text("src\n"), id="ignore-file"),
    ],
)
def test_incremental_update_equals_full_scan(tmp_path: Path, change: object) -> None:
    _tree(tmp_path)
    index = ContextIndex(tmp_path, tmp_path / "Dockerfile")
    index.scan()
    assert callable(change)
    change(tmp_path)
    touched = [
        tmp_path / "src",
        tmp_path / "src" / "a.py",
        tmp_path / "lib",
        tmp_path / "node_modules" / "y.js",
    ]
    touched.append(tmp_path / ".dockerignore")
    index.update(str(p) for p in touched)
    full = ContextIndex(tmp_path, tmp_path / "Dockerfile")
    full.scan()
    assert index.files() == full.files()
    assert index.digest() == full.digest()


def test_cache_survives_a_restart_and_skips_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    _tree(ctx)
    cache_path = tmp_path / "cache.json"
    first = ContextIndex(ctx, ctx / "Dockerfile", DigestCache(cache_path))
    first.scan()
    first.cache.save()

    import watcher.build.contenttag as ct

    def no_reads(paths: Iterable[str]) -> list[str]:
        read = list(paths)
        assert not read, f"read {read} although nothing changed"
        return []

    monkeypatch.setattr(ct, "hash_files", no_reads)
    second = ContextIndex(ctx, ctx / "Dockerfile", DigestCache(cache_path))
    second.scan()
    assert second.digest() == first.digest()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00garbage", id="garbage"),
        pytest.param(__import__("marshal").dumps(("devreg-content-cache/0", {})), id="old-version"),
        pytest.param(
            __import__("marshal").dumps(("devreg-content-cache/2", {"/x": {"a": (1, 2)}})),
            id="bad-row",
        ),
    ],
)
def test_a_bad_cache_is_ignored(tmp_path: Path, content: bytes) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    _tree(ctx)
    cache_path = tmp_path / "cache"
    cache_path.write_bytes(content)
    index = ContextIndex(ctx, ctx / "Dockerfile", DigestCache(cache_path))
    index.scan()
    index.cache.save()
    fresh = ContextIndex(ctx, ctx / "Dockerfile")
    fresh.scan()
    assert index.digest() == fresh.digest()
    reloaded = ContextIndex(ctx, ctx / "Dockerfile", DigestCache(cache_path))
    reloaded.scan()
    assert reloaded.digest() == fresh.digest()


def test_one_cache_serves_two_contexts(tmp_path: Path) -> None:
    """Rows are per context: the same file has another path (and share) in
    a context one level up."""
    inner = tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    _tree(inner)
    (tmp_path / "outer" / "Dockerfile").write_text("FROM scratch\n")
    cache = DigestCache(tmp_path / "cache")
    for ctx in (inner, tmp_path / "outer"):
        cached = ContextIndex(ctx, ctx / "Dockerfile", cache)
        cached.scan()
        fresh = ContextIndex(ctx, ctx / "Dockerfile")
        fresh.scan()
        assert cached.digest() == fresh.digest()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(
            lambda r: (r / "node_modules").rename(r / "elsewhere"),
            ["node_modules", "elsewhere"],
            id="ignored-dir-with-kept-files-moved",
        ),
        pytest.param(
            lambda r: (r / "node_modules" / "keep" / "new.js").write_text("n"),
            ["node_modules/keep/new.js"],
            id="file-inside-an-exception",
        ),
        pytest.param(
            lambda r: (r / "node_modules" / "other" / "new.js").write_text("n"),
            ["node_modules/other/new.js"],
            id="file-inside-a-pruned-dir",
        ),
    ],
)
def test_directories_an_exception_reaches_into(
    tmp_path: Path, change: object, named: list[str]
) -> None:
    """``node_modules`` is ignored but ``!node_modules/keep`` brings files
    back: the walk enters it without keeping it, and an update of it (a
    move takes its kept files along) matches a full scan."""
    (tmp_path / "node_modules" / "keep").mkdir(parents=True)
    (tmp_path / "node_modules" / "other").mkdir()
    (tmp_path / "node_modules" / "keep" / "k.js").write_text("k")
    (tmp_path / "node_modules" / "other" / "o.js").write_text("o")
    (tmp_path / ".dockerignore").write_text("node_modules\n!node_modules/keep\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    index = ContextIndex(tmp_path, tmp_path / "Dockerfile")
    index.scan()
    assert "node_modules/keep/k.js" in index.files()
    assert index.passed == {"node_modules"} and index.pruned == {"node_modules/other"}
    assert callable(change)
    change(tmp_path)
    index.update(str(tmp_path / rel) for rel in named)
    full = ContextIndex(tmp_path, tmp_path / "Dockerfile")
    full.scan()
    assert (index.files(), index.digest()) == (full.files(), full.digest())
    assert (index.passed, index.pruned) == (full.passed, full.pruned)
    assert sorted(index.directories()) == sorted(full.directories())


def test_links_and_big_files_count_by_content(tmp_path: Path) -> None:
    """A link counts by its target (not followed), a file of 1 MB or more is
    hashed on the pool like any other."""
    _tree(tmp_path)
    (tmp_path / "link").symlink_to("src/a.py")
    before = _tag(tmp_path)
    (tmp_path / "link").unlink()
    (tmp_path / "link").symlink_to("src/b.py")
    assert _tag(tmp_path) != before
    (tmp_path / "link").unlink()
    (tmp_path / "link").symlink_to("src/a.py")
    assert _tag(tmp_path) == before
    data = bytearray((tmp_path / "big.bin").read_bytes())
    data[-1] ^= 1
    (tmp_path / "big.bin").write_bytes(bytes(data))
    assert _tag(tmp_path) != before
