"""devreg's commit-time core: load devspace.yaml with positions, validate
``localRegistry``, compute image rewrites and variables.

Pure and fast to import: nothing here imports docker, kubernetes or watchdog.
"""
