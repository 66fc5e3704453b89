"""``devreg build [KEY…]``: one build-and-deliver pass, then ``.devreg.env``."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from hookpkg.errors import FatalError
from watcher.contenttag import ContextIndex, DigestCache
from watcher.session import Session, require_config, stderr_log
from watcher.state import StateDir


def _prefixed(key: str) -> Callable[[str], None]:
    def log(line: str) -> None:
        stderr_log(f"[{key}] {line}")

    return log


def build(
    *,
    config: Path = Path("devspace.yaml"),
    context: str | None = None,
    namespace: str | None = None,
    fmt: str = "text",
    keys: list[str] | None = None,
    timeout: float = 120.0,
) -> int:
    cfg = require_config(config)
    selected = list(keys or cfg.images)
    unknown = [k for k in selected if k not in cfg.images]
    if unknown:
        raise FatalError(
            f"no image {', '.join(map(repr, unknown))} in {config} "
            f"(images: {', '.join(cfg.images)})"
        )
    state = StateDir(cfg.directory)
    state.ensure()
    cache = DigestCache(state.cache_path)
    session = Session(context=context, namespace=namespace, timeout=timeout, log=stderr_log)
    results = []
    try:
        pipeline = session.pipeline(cfg, state)
        for key in selected:
            image = cfg.images[key]
            index = ContextIndex(image.context, image.dockerfile, cache)
            index.scan()
            outcome = pipeline.run(
                key,
                index.snapshot(),
                cancel=threading.Event(),
                log=_prefixed(key),
            )
            results.append(outcome)
            if outcome.state == "failed":
                stderr_log(f"[{key}] FAILED: {outcome.error}")
                for line in outcome.tail[-20:]:
                    stderr_log(f"[{key}]   {line}")
            else:
                stderr_log(
                    f"[{key}] {outcome.state}: {outcome.reference} ({outcome.seconds:.2f} s)"
                )
        cache.save()
        pipeline.publish()
    finally:
        session.close()
    if fmt == "json":
        json.dump(
            {
                "images": {
                    o.key: {
                        "state": o.state,
                        "tag": o.tag,
                        "reference": o.reference,
                        "seconds": round(o.seconds, 3),
                        "error": o.error,
                        "log_tail": list(o.tail),
                    }
                    for o in results
                },
                "env_file": str(pipeline.env_path),
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        print(f"wrote {pipeline.env_path}")
    return 1 if any(o.state == "failed" for o in results) else 0
