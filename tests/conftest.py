from __future__ import annotations

from pathlib import Path

# Every module in tests/plugins/ is a pytest plugin (the test environment,
# BuildKit, …); listing them by file keeps this file out of merge conflicts.
pytest_plugins = sorted(
    f"tests.plugins.{p.stem}"
    for p in (Path(__file__).parent / "plugins").glob("*.py")
    if p.stem != "__init__"
)
