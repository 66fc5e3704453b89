"""devreg's commit-time core: load devspace.yaml with positions, validate
``localRegistry``, compute image rewrites and variables.

Pure and fast to import: nothing here imports docker, kubernetes or watchdog.
"""

# The one place the version is written: setuptools reads it (pyproject.toml,
# ``[tool.setuptools.dynamic]``) and ``devreg --version`` prints it.
__version__ = "0.1.0"
