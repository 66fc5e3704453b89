"""The shape docs/architecture.md and STYLE.md describe, kept true by the tree itself:

* no function in ``hookpkg/`` or ``watcher/`` is over 60 lines (a longer one is split
  where a name explains a part);
* every module there has a test module of its own, mirroring the tree
  (``hookpkg/rewrite.py`` -> ``tests/hookpkg/rewrite_test.py``);
* ``hookpkg/`` (the pre-commit hook, run on every commit) imports nothing from
  ``watcher/`` and none of the runtime's libraries, neither at the top of a module nor
  inside a function, and importing every one of its modules loads none of them.

The hook's own command is checked the same way at run time in
tests/hookpkg/commands/check_test.py (``test_check_imports_no_runtime_libraries``).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("hookpkg", "watcher")
MAX_FUNCTION_LINES = 60

# What the hook must never import: the runtime half, its libraries (docker, the
# Kubernetes client, watchdog) and the network or a subprocess (docs/architecture.md).
FORBIDDEN_IN_HOOKPKG = (
    "watcher",
    "docker",
    "kubernetes",
    "watchdog",
    "requests",
    "urllib3",
    "http",
    "socket",
    "subprocess",
)


def modules() -> Iterator[Path]:
    """Every module of the two packages, as a path relative to the repository."""
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path.relative_to(REPO)


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST, int]]:
    """``(qualified name, node, lines)`` of every function, methods and nested ones
    included; lines count from the first decorator to the last line of the body."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                assert node.end_lineno is not None
                yield name, node, node.end_lineno - first + 1
            yield from functions(node, f"{name}.")
        else:
            yield from functions(node, prefix)


def test_the_scan_sees_long_and_nested_functions() -> None:
    """The scan itself: a nested function and a decorated method are counted."""
    body = [f"x{i} = {i}" for i in range(59)]
    source = "\n".join(
        [
            "def short():",
            *(f"    {line}" for line in body),
            "class C:",
            "    @staticmethod",
            "    def long():",
            *(f"        {line}" for line in body),
            "        def inner():",
            "            pass",
        ]
    )
    found = {name: lines for name, _, lines in functions(ast.parse(source))}
    assert found == {"short": 60, "C.long": 63, "C.long.inner": 2}


def test_no_function_over_60_lines() -> None:
    long = {
        (str(path), name): lines
        for path in modules()
        for name, _, lines in functions(ast.parse((REPO / path).read_text(), str(path)))
        if lines > MAX_FUNCTION_LINES
    }
    assert not long, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them where a name explains "
        f"a part): {long}"
    )


def test_every_module_has_a_test_module() -> None:
    missing: set[str] = set()
    for path in modules():
        if path.name == "__init__.py":
            continue
        if not (REPO / "tests" / path.parent / f"{path.stem}_test.py").is_file():
            missing.add(str(path))
    assert not missing, f"modules without tests/<same path>/<name>_test.py: {missing}"


def imported_roots(path: Path) -> Iterator[tuple[str, int]]:
    """The top-level name of every absolute import in ``path``, with its line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            yield "__import__", node.lineno


def test_the_import_scan_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os.path\n"
        "def f():\n"
        "    from watcher.build import kind\n"
        "    import kubernetes.client as k\n"
        "    return __import__('docker')\n"
    )
    assert sorted(imported_roots(module)) == [
        ("__import__", 5),
        ("kubernetes", 4),
        ("os", 1),
        ("watcher", 3),
    ]


def test_hookpkg_imports_nothing_of_the_runtime() -> None:
    found = [
        f"{path}:{line}: {root}"
        for path in modules()
        if path.parts[0] == "hookpkg"
        for root, line in imported_roots(REPO / path)
        if root in FORBIDDEN_IN_HOOKPKG or root == "__import__"
    ]
    assert not found, "hookpkg/ must stay pure and fast to import:\n" + "\n".join(found)


def test_no_relative_import_reaches_out_of_hookpkg() -> None:
    """``from .. import x`` from hookpkg/ could only reach the repository root."""
    found = [
        f"{path}:{node.lineno}"
        for path in modules()
        if path.parts[0] == "hookpkg"
        for node in ast.walk(ast.parse((REPO / path).read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > len(path.parts) - 1
    ]
    assert not found, found


def test_importing_every_hookpkg_module_loads_none_of_the_runtime() -> None:
    """What the static scan cannot see: a module the hook imports that imports the
    runtime in turn. A fresh interpreter, every module of hookpkg/ imported."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import hookpkg\n"
        "names = [m.name for m in pkgutil.walk_packages(hookpkg.__path__, 'hookpkg.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        f"forbidden = {FORBIDDEN_IN_HOOKPKG!r}\n"
        "print(len(names))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in forbidden))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    count, loaded = done.stdout.splitlines()
    expected = sum(1 for p in modules() if p.parts[0] == "hookpkg" and p.name != "__init__.py")
    assert int(count) >= expected  # every module (and its packages) was imported
    assert loaded == "[]"
