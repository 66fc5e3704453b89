"""watcher/build/pipeline.py: what it publishes to .devreg.env (the build and delivery
paths run end to end in tests/watcher/real_nodes_test.py, kind_cluster_test.py and
build/buildkit/)."""

from __future__ import annotations

from pathlib import Path

from hookpkg.config import LocalRegistry
from hookpkg.plan import ImagePlan
from tests.configs import config, image
from watcher.build.pipeline import Pipeline
from watcher.daemon import dotenv
from watcher.daemon.state import StateDir


def test_a_refused_image_is_left_out_and_the_others_are_written(tmp_path: Path) -> None:
    """Issue 15: one image whose value cannot be sourced unquoted (a delivery record
    edited to carry a shell expansion) keeps only that image out of .devreg.env."""
    cfg = config(LocalRegistry(enabled=False), image("api", "acme/api"), image("web", "acme/web"))
    state = StateDir(tmp_path)
    state.record_delivered("api", {"repository": "acme/api", "tag": "1.0", "path": "own-registry"})
    state.record_delivered(
        "web", {"repository": "acme/web", "tag": "$(rm -rf ~)", "path": "own-registry"}
    )
    logged: list[str] = []
    plans = {
        "api": ImagePlan("api", "own-registry", "acme/api"),
        "web": ImagePlan("web", "own-registry", "acme/web"),
    }
    pipeline = Pipeline(
        cfg, routes=plans, endpoint=None, engine=None, backend=None, state=state, log=logged.append
    )
    pipeline.env_path = tmp_path / ".devreg.env"
    pipeline.publish()
    written = dotenv.read(tmp_path / ".devreg.env")
    assert written["RUNTIME_IMAGES_API"] == "acme/api:1.0"
    assert not any(name.startswith("RUNTIME_IMAGES_WEB") for name in written)
    assert any("[web] not written to .devreg.env" in line for line in logged), logged
