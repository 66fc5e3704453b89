"""In-cluster builds (``localbuild: false``): the BuildKit sidecar of the registry pod.

The build context and the Dockerfile travel as one tar stream to the
``buildkitd`` container, where ``buildctl`` builds them with the
``dockerfile.v0`` frontend and pushes to the registry in the same pod.
Everything here is independent of how the bytes get there except
:mod:`watcher.build.buildkit.transport`: a local subprocess (tests, benchmarks, a
buildkitd on this machine) or an exec stream of the Kubernetes API.
"""
