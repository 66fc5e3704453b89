"""pytest plugin: a real buildkitd on this machine (see docs/buildkit.md).

Session fixtures:

* ``buildkit_bin``: the directory with ``buildkitd`` and ``buildctl``, built through the
  Go module proxy by ``scripts/buildkit-bin`` (cached by version; a cold build takes
  minutes).
* ``buildkitd``: the address (``unix://…/buildkitd.sock``) of a buildkitd started for
  the session as root with the runc worker, its socket and state in a temporary
  directory, stopped at the end.
* ``buildkit_image``: the BuildKit sidecar image of ``scripts/testenv`` (part
  ``buildkit``: ``devreg-test/buildkit:<version>``, rootless as
  ``moby/buildkit:master-rootless`` is, in every real node's containerd), for
  ``localRegistry.buildKitImage``; the part is brought up when it does not run.

With ``CI=true`` a buildkitd that cannot be built or started fails the test run;
elsewhere the tests that need it are skipped with the reason. Tests using these
fixtures get the ``buildkit`` marker (``-m "not buildkit"`` runs the rest).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    # Imported lazily below: this plugin loads before the testenv plugin, whose
    # module pytest must import itself (assertion rewriting).
    from tests.plugins.testenv import TestEnv

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "buildkit-bin"
TESTENV = REPO / "scripts" / "testenv"
# A cold build of buildkitd + buildctl on 2 busy cores.
BUILD_TIMEOUT = float(os.environ.get("DEVREG_BUILDKIT_BUILD_TIMEOUT", 40 * 60))
START_TIMEOUT = 60.0
FIXTURES = ("buildkit_bin", "buildkitd", "buildkit_image")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"buildkitd: {reason}", pytrace=False)
    pytest.skip(f"buildkitd unavailable: {reason}")


def _tail(text: str, n: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


@pytest.fixture(scope="session")
def buildkit_bin() -> Path:
    if os.geteuid() != 0:
        _unavailable("the test buildkitd runs as root (runc worker); run the tests as root")
    try:
        done = subprocess.run(
            [str(SCRIPT)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        _unavailable(f"scripts/buildkit-bin: {e}")
        raise  # unreachable
    if done.returncode != 0:
        _unavailable(f"scripts/buildkit-bin failed (exit {done.returncode}):\n{_tail(done.stderr)}")
    return Path(done.stdout.strip().splitlines()[-1])


def _workers_ready(buildctl: Path, addr: str) -> bool:
    done = subprocess.run(
        [str(buildctl), "--addr", addr, "debug", "workers"],
        capture_output=True,
        timeout=10,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode == 0 and len(done.stdout.splitlines()) > 1


@pytest.fixture(scope="session")
def buildkitd(buildkit_bin: Path) -> Iterator[str]:
    # Short path: a unix socket path is limited to 108 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="devreg-bk-"))
    addr = f"unix://{tmp}/buildkitd.sock"
    log_path = tmp / "buildkitd.log"
    env = {**os.environ, "PATH": f"{buildkit_bin}:{os.environ.get('PATH', '')}:/usr/sbin:/sbin"}
    argv = [
        str(buildkit_bin / "buildkitd"),
        "--addr",
        addr,
        "--root",
        str(tmp / "state"),
        "--oci-worker=true",
        "--containerd-worker=false",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _workers_ready(buildkit_bin / "buildctl", addr):
            if proc.poll() is not None or time.monotonic() > deadline:
                what = (
                    f"exited with {proc.returncode}"
                    if proc.poll() is not None
                    else f"no worker after {START_TIMEOUT:.0f}s"
                )
                _unavailable(
                    f"`{' '.join(argv)}` {what}; log {log_path}:\n"
                    f"{_tail(log_path.read_text(errors='replace'))}"
                )
            time.sleep(0.1)  # polling the socket, bounded by the deadline above
        yield addr
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def buildkit_image(testenv: TestEnv) -> str:
    """``DEVREG_TEST_BUILDKIT_IMAGE``, bringing part ``buildkit`` up when the running
    environment does not export it (or says it is not running)."""
    from tests.plugins.testenv import parse_exports

    image = os.environ.get("DEVREG_TEST_BUILDKIT_IMAGE")
    env = subprocess.run(
        [str(TESTENV), "env"], capture_output=True, text=True, timeout=60, check=False
    )
    if not image or env.returncode != 0:
        try:
            done = subprocess.run(
                [str(TESTENV), "up", "buildkit"],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            _unavailable(f"scripts/testenv up buildkit: {e}")
            raise  # unreachable
        if done.returncode != 0:
            _unavailable(
                f"scripts/testenv up buildkit failed (exit {done.returncode}):\n"
                f"{_tail(done.stderr)}"
            )
        image = parse_exports(done.stdout).get("DEVREG_TEST_BUILDKIT_IMAGE")
        if not image:
            _unavailable("scripts/testenv up buildkit exported no DEVREG_TEST_BUILDKIT_IMAGE")
        os.environ["DEVREG_TEST_BUILDKIT_IMAGE"] = str(image)
    return str(image)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in FIXTURES):
            item.add_marker(pytest.mark.buildkit)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "buildkit: needs a real buildkitd (scripts/buildkit-bin)")
