"""Read ``buildctl --progress plain`` output: lines for the user, and the facts
a build result needs (the error, the failing step, the pushed digest).

The plain printer writes one vertex (build step) per ``#N`` id: its name on
first sight, then status lines, timestamped log lines (``#5 0.123 hello``),
and a last ``DONE 1.2s`` / ``CACHED`` / ``ERROR: …`` / ``CANCELED``. On a
failure it ends with the failing step's log between ``------`` rules, an
excerpt of the Dockerfile, and ``error: failed to solve: …``.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field

TAIL_LINES = 40
_VERTEX = re.compile(r"#(\d+) (.*)\Z")
_LOG = re.compile(r"\d+\.\d+ (.*)\Z", re.S)
_DONE = re.compile(r"DONE (\d+(?:\.\d+)?)s\Z")
_DIGEST = re.compile(r"pushing manifest for (\S+)@(sha256:[0-9a-f]{64})")
# BuildKit's own bookkeeping vertices; their chatter helps nobody.
_QUIET_PREFIX = "[internal]"


@dataclass
class Progress:
    """Feed it every output line in order; it returns what to show."""

    tail_lines: int = TAIL_LINES
    names: dict[str, str] = field(default_factory=dict)
    tail: collections.deque[str] = field(init=False)
    error: str | None = None  # buildctl's closing ``error: …``, without the prefix
    failed_step: str | None = None
    digest: str | None = None  # of the pushed manifest
    cached_steps: int = 0
    done_steps: int = 0

    def __post_init__(self) -> None:
        self.tail = collections.deque(maxlen=self.tail_lines)

    def feed(self, line: str) -> str | None:
        """The user-facing form of ``line``, or None when it is noise."""
        line = line.rstrip("\r\n")
        if not line.strip():
            return None
        self.tail.append(line)
        m = _VERTEX.match(line)
        if m is None:
            if line.startswith("error: "):
                self.error = line[len("error: ") :]
            # The failure report (rules, the step's log, the Dockerfile
            # excerpt) and anything else buildctl says: shown as it is.
            return line
        vid, rest = m.groups()
        name = self.names.get(vid)
        if name is None:
            self.names[vid] = rest
            return None if rest.startswith(_QUIET_PREFIX) else rest
        quiet = name.startswith(_QUIET_PREFIX)
        if rest == "CACHED":
            self.cached_steps += 1
            return None if quiet else f"{name}: cached"
        if rest == "CANCELED":
            return f"{name}: cancelled"
        if rest.startswith("ERROR"):
            self.failed_step = name
            return f"{name}: {rest.lower() if rest == 'ERROR' else 'error' + rest[5:]}"
        done = _DONE.match(rest)
        if done:
            self.done_steps += 1
            return None if quiet else f"{name}: done in {done.group(1)}s"
        log = _LOG.match(rest)
        if log:
            # The step's own output (a RUN command's stdout/stderr).
            return f"  {log.group(1)}"
        pushed = _DIGEST.search(rest)
        if pushed:
            self.digest = pushed.group(2)
        # A status is printed when it starts and again when it ends ("pushing
        # layers", then "pushing layers 0.1s done"): the end says it all.
        if quiet or not rest.endswith(" done"):
            return None
        return f"  {rest}"
