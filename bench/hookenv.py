"""How long a new user's first commit waits for the hook: the real ``pre-commit``
creating devreg's hook environment vs check-jsonschema's (issue 11's target:
devreg's creates at least as fast, ratio <= 1.0).

Each measurement is ``pre-commit install-hooks`` in a fresh git repository whose
``.pre-commit-config.yaml`` names one hook repository, with every cache clean:
a new ``PRE_COMMIT_HOME`` (pre-commit clones the repository and makes the
virtualenv), a new ``PIP_CACHE_DIR`` (pip downloads and builds every package)
and a new virtualenv app-data directory (its seed wheels). The two are
interleaved, alternating which goes first, and the medians compared. Also
printed: the packages in each environment and its size on disk.

devreg is this checkout's commit (``HEAD``, or ``--rev``), cloned from
``file://``; check-jsonschema is ``--cjs-repo`` at ``--cjs-rev`` (GitHub by
default; a local clone or mirror where GitHub cannot be reached).

    python bench/hookenv.py [--rounds N] [--cjs-repo URL_OR_PATH] [--cjs-rev TAG]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
CJS_REPO = "https://github.com/python-jsonschema/check-jsonschema"
CJS_REV = "0.37.4"


class Hook(NamedTuple):
    name: str
    repo: str
    rev: str
    hook_id: str


class Run(NamedTuple):
    seconds: float
    packages: list[str]
    megabytes: float


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def du_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            p = Path(root, name)
            if not p.is_symlink():
                total += p.stat().st_size
    return total / 1e6


def install_hooks(hook: Hook, scratch: Path) -> Run:
    """One cold ``pre-commit install-hooks`` for ``hook``."""
    work = Path(tempfile.mkdtemp(prefix=f"{hook.name}-", dir=scratch))
    project, home = work / "project", work / "pre-commit-home"
    project.mkdir()
    git("init", "-q", cwd=project)
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {hook.repo}\n  rev: {hook.rev}\n  hooks:\n  - id: {hook.hook_id}\n"
    )
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(home),
        "PIP_CACHE_DIR": str(work / "pip-cache"),
        "VIRTUALENV_OVERRIDE_APP_DATA": str(work / "virtualenv-app-data"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install-hooks"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{hook.name}: pre-commit install-hooks failed:\n{done.stdout}{done.stderr}"
        )
    (python,) = home.glob("repo*/py_env-*/bin/python")
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    packages = sorted(p["name"] for p in json.loads(listed.stdout))
    megabytes = du_mb(python.parents[1])
    shutil.rmtree(work, ignore_errors=True)
    return Run(seconds, packages, megabytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each (default 3)")
    parser.add_argument("--rev", default="HEAD", help="devreg's revision (default HEAD)")
    parser.add_argument("--cjs-repo", default=os.environ.get("DEVREG_BENCH_CJS_REPO", CJS_REPO))
    parser.add_argument("--cjs-rev", default=CJS_REV)
    args = parser.parse_args()

    rev = git("rev-parse", args.rev, cwd=REPO)
    if git("status", "--porcelain", "--", "hookpkg", "watcher", "pyproject.toml", cwd=REPO):
        print(f"note: uncommitted changes are not measured; devreg is commit {rev[:12]}")
    cjs_repo = args.cjs_repo
    if "://" not in cjs_repo:
        cjs_repo = Path(cjs_repo).resolve().as_uri()
    hooks = [
        Hook("devreg", REPO.as_uri(), rev, "devspace-registry"),
        Hook("check-jsonschema", cjs_repo, args.cjs_rev, "check-jsonschema"),
    ]
    runs: dict[str, list[Run]] = {h.name: [] for h in hooks}
    with tempfile.TemporaryDirectory(prefix="devreg-bench-hookenv-") as tmp:
        for i in range(args.rounds):
            for hook in hooks if i % 2 == 0 else hooks[::-1]:
                run = install_hooks(hook, Path(tmp))
                runs[hook.name].append(run)
                print(f"  round {i + 1}: {hook.name:<17} {run.seconds:6.2f} s", flush=True)

    print()
    print(f"pre-commit install-hooks from clean caches, median of {args.rounds}:")
    medians = {}
    for hook in hooks:
        rs = runs[hook.name]
        medians[hook.name] = statistics.median(r.seconds for r in rs)
        spread = f"{min(r.seconds for r in rs):.2f}-{max(r.seconds for r in rs):.2f}"
        last = rs[-1]
        print(
            f"  {hook.name:<17} {medians[hook.name]:6.2f} s ({spread})  "
            f"{len(last.packages)} packages, {last.megabytes:.0f} MB "
            f"({hook.repo} @ {hook.rev[:12]})"
        )
        print(f"    {', '.join(last.packages)}")
    ratio = medians["devreg"] / medians["check-jsonschema"]
    # Each round's pair ran back to back: its ratio shares the load of the moment.
    paired = [
        d.seconds / c.seconds for d, c in zip(runs["devreg"], runs["check-jsonschema"], strict=True)
    ]
    print(
        f"ratio devreg / check-jsonschema: {ratio:.2f} (target <= 1.0); per round "
        f"{', '.join(f'{r:.2f}' for r in paired)}, median {statistics.median(paired):.2f}"
    )


if __name__ == "__main__":
    main()
