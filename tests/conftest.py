from __future__ import annotations

import os
from pathlib import Path

import pytest

# Every module in tests/plugins/ is a pytest plugin (the test environment,
# BuildKit, …); listing them by file keeps this file out of merge conflicts.
pytest_plugins = sorted(
    f"tests.plugins.{p.stem}"
    for p in (Path(__file__).parent / "plugins").glob("*.py")
    if p.stem != "__init__"
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The project's own realistic configs (tests/fixtures/devspace/README.md)."""
    return REPO / "tests" / "fixtures" / "devspace"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """Real-world devspace.yaml files in ``../shared/corpus`` beside the checkout, where
    that exists (or ``DEVREG_CORPUS``): an extra check, never needed. A clean clone
    skips it, on CI too; the project's own fixtures (``fixtures``) always run."""
    path = Path(
        os.environ.get("DEVREG_CORPUS", REPO.parent / "shared" / "corpus" / "devspace-real")
    )
    if not path.is_dir():
        pytest.skip(f"no devspace.yaml corpus at {path} (optional; set DEVREG_CORPUS)")
    return path
