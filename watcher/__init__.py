"""devreg's runtime half: file events, builds, the cluster, ``.devreg.env``.

``watcher`` imports ``hookpkg``, never the reverse.
"""
