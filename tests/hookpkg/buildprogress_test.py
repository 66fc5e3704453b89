from __future__ import annotations

import pytest

from hookpkg.buildprogress import Progress

# Real ``buildctl build --progress plain`` output (buildkit v0.34.2, this machine).
SUCCESS = """\
#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 237B done
#1 DONE 0.0s

#2 [internal] load .dockerignore
#2 transferring context: 2B done
#2 DONE 0.0s

#3 [internal] load build context
#3 transferring context: 1.98MB 0.0s done
#3 DONE 0.1s

#4 [base 1/3] COPY busybox /bin/busybox
#4 CACHED

#5 [base 2/3] RUN ["/bin/busybox", "--install", "-s", "/bin"]
#5 CACHED

#6 [base 3/3] RUN echo "built with smoke" > /msg
#6 0.105 a line of output
#6 DONE 1.5s

#7 exporting to image
#7 exporting layers
#7 exporting layers 0.1s done
#7 exporting manifest sha256:d5bb9812c235ea59ea6d2247ab4b73156c087efe892ace958f64425f27a59b08 done
#7 pushing layers
#7 pushing layers 0.0s done
#7 pushing manifest for 127.0.0.1:37173/org/app:smoke1@sha256:d5bb9812c235ea59ea6d2247ab4b73156c087efe892ace958f64425f27a59b08
#7 pushing manifest for 127.0.0.1:37173/org/app:smoke1@sha256:d5bb9812c235ea59ea6d2247ab4b73156c087efe892ace958f64425f27a59b08 0.0s done
#7 DONE 0.1s
"""

FAILURE = """\
#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 156B done
#1 DONE 0.0s

#4 [1/2] COPY busybox /bin/busybox
#4 CACHED

#5 [2/2] RUN ["/bin/busybox","sh","-c","echo about to fail; echo on stderr >&2; exit 3"]
#5 0.114 about to fail
#5 0.115 on stderr
#5 ERROR: process "/bin/busybox sh -c echo about to fail; echo on stderr >&2; exit 3" did not complete successfully: exit code: 3
------
 > [2/2] RUN ["/bin/busybox","sh","-c","echo about to fail; echo on stderr >&2; exit 3"]:
0.114 about to fail
0.115 on stderr
------
Dockerfile:3
--------------------
   1 |     FROM scratch
   2 |     COPY busybox /bin/busybox
   3 | >>> RUN ["/bin/busybox","sh","-c","echo about to fail; echo on stderr >&2; exit 3"]
   4 |
--------------------
error: failed to solve: process "/bin/busybox sh -c echo about to fail; echo on stderr >&2; exit 3" did not complete successfully: exit code: 3
"""


def shown(text: str, progress: Progress | None = None) -> list[str]:
    progress = progress if progress is not None else Progress()
    return [s for line in text.splitlines() if (s := progress.feed(line)) is not None]


def test_success_lines_for_the_user() -> None:
    assert shown(SUCCESS) == [
        "[base 1/3] COPY busybox /bin/busybox",
        "[base 1/3] COPY busybox /bin/busybox: cached",
        '[base 2/3] RUN ["/bin/busybox", "--install", "-s", "/bin"]',
        '[base 2/3] RUN ["/bin/busybox", "--install", "-s", "/bin"]: cached',
        '[base 3/3] RUN echo "built with smoke" > /msg',
        "  a line of output",
        '[base 3/3] RUN echo "built with smoke" > /msg: done in 1.5s',
        "exporting to image",
        "  exporting layers 0.1s done",
        "  exporting manifest sha256:d5bb9812c235ea59ea6d2247ab4b73156c087efe892ace958f64425f27a59b08 done",
        "  pushing layers 0.0s done",
        "  pushing manifest for 127.0.0.1:37173/org/app:smoke1@sha256:d5bb9812c235ea59ea6d2247ab4b73156c087efe892ace958f64425f27a59b08 0.0s done",
        "exporting to image: done in 0.1s",
    ]


def test_success_facts() -> None:
    p = Progress()
    shown(SUCCESS, p)
    assert p.error is None
    assert p.failed_step is None
    assert p.digest == "sha256:d5bb9812c235ea59ea6d2247ab4b73156c087efe892ace958f64425f27a59b08"
    assert p.cached_steps == 2


def test_failure_facts_and_report() -> None:
    p = Progress()
    lines = shown(FAILURE, p)
    assert p.error is not None
    assert p.error.startswith("failed to solve: process ")
    assert p.error.endswith("exit code: 3")
    assert p.failed_step == (
        '[2/2] RUN ["/bin/busybox","sh","-c","echo about to fail; echo on stderr >&2; exit 3"]'
    )
    assert "  about to fail" in lines
    assert "  on stderr" in lines
    # buildctl's own report (the step's log, the Dockerfile excerpt) is shown as is.
    assert (
        "   3 | >>> "
        + 'RUN ["/bin/busybox","sh","-c","echo about to fail; echo on stderr >&2; exit 3"]'
        in lines
    )
    assert lines[-1].startswith("error: failed to solve:")
    assert p.digest is None


def test_tail_keeps_the_last_raw_lines() -> None:
    p = Progress(tail_lines=5)
    shown(FAILURE, p)
    assert len(p.tail) == 5
    assert p.tail[-1].startswith("error: failed to solve:")
    assert "" not in p.tail


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param(["#3 [internal] load build context", "#3 DONE 0.1s"], [], id="internal-quiet"),
        pytest.param(
            ["#8 [2/2] RUN sleep 100", "#8 CANCELED"],
            ["[2/2] RUN sleep 100", "[2/2] RUN sleep 100: cancelled"],
            id="cancelled",
        ),
        pytest.param(
            ["#8 [2/2] RUN x", "#8 ERROR"], ["[2/2] RUN x", "[2/2] RUN x: error"], id="bare-error"
        ),
        pytest.param(["", "   ", "\r\n"], [], id="blank"),
        pytest.param(
            ["error: failed to dial gRPC: connection refused"],
            ["error: failed to dial gRPC: connection refused"],
            id="buildctl-error-without-vertex",
        ),
        pytest.param(
            ["#9 [1/1] RUN x", "#9 12.345 line with #9 inside\r"],
            ["[1/1] RUN x", "  line with #9 inside"],
            id="output-with-carriage-return",
        ),
    ],
)
def test_feed(lines: list[str], expected: list[str]) -> None:
    p = Progress()
    assert [s for line in lines if (s := p.feed(line)) is not None] == expected
