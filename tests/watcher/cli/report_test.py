"""Each result, as text and as JSON, byte for byte: what users, the README,
docs/ and scripts read from stdout."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import pytest

from hookpkg.report import FileResult
from watcher.build.pipeline import Outcome
from watcher.cli import report
from watcher.cli.report import write
from watcher.cli.results import (
    BuildResult,
    CheckResult,
    DownResult,
    EnvResult,
    Result,
    StatusResult,
    StopResult,
    UpResult,
    WatcherStatus,
    WatchResult,
)
from watcher.cluster.kep1755 import LocalRegistryHosting
from watcher.cluster.pullprobe import NodeResult, ProbeResult
from watcher.cluster.registry import RegistryEndpoint
from watcher.daemon.exec_cmd import ExecResult

DEPLOYED = RegistryEndpoint(
    host="localhost:31234",
    push_host="localhost:31234",
    source="deployed",
    context="dev",
    server="https://10.0.0.1:6443",
    namespace="devreg",
    name="registry",
    node_port=31234,
    workload_kind="Deployment",
    pod="registry-5d4f-abcde",
    reach="localhost",
)
FORWARDED = RegistryEndpoint(
    host="localhost:31234",
    push_host="127.0.0.1:31234",
    source="deployed",
    context="dev",
    server="https://10.0.0.1:6443",
    namespace="devreg",
    name="registry",
    node_port=31234,
    workload_kind="StatefulSet",
    pod="registry-0",
    reach="port-forward",
)
PUBLISHED = RegistryEndpoint(
    host="localhost:5001",
    push_host="localhost:5001",
    source="kep-1755",
    context="kind-dev",
    server="https://127.0.0.1:40000",
    reach="kep-1755",
    kep1755=LocalRegistryHosting(
        host="localhost:5001", help="https://kind.sigs.k8s.io/docs/user/local-registry/"
    ),
)

REGISTRY_OK = {
    "context": "dev",
    "namespace": "devreg",
    "name": "registry",
    "deployed": True,
    "workload_kind": "Deployment",
    "node_port": 31234,
    "host": "localhost:31234",
    "pod": "registry-5d4f-abcde",
    "pod_phase": "Running",
    "pod_ready": True,
    "pod_problems": [],
    "kep1755": None,
    "paths": {"app": "local-registry"},
    "answers": True,
    "answer_error": None,
}
REGISTRY_NOT_READY = {
    **REGISTRY_OK,
    "pod_phase": "Pending",
    "pod_ready": False,
    "pod_node": "node-a",
    "pod_problems": ["pod registry-5d4f-abcde: container registry: ErrImagePull: not found"],
    "paths": {},
    "answers": False,
    "answer_error": "connection refused",
}
NOT_RUNNING = WatcherStatus(
    running=False,
    pid=None,
    log_path=Path("/p/.devreg/watch.log"),
    log_written=False,
    images={},
    config_errors=[],
    exec=None,
    updated=None,
)
RUNNING = WatcherStatus(
    running=True,
    pid=4242,
    log_path=Path("/p/.devreg/watch.log"),
    log_written=True,
    images={
        "web": {
            "state": "failed",
            "tag": None,
            "last_build_seconds": None,
            "path": "kind-load",
            "last_error": "docker build exited 1",
            "last_error_tail": [f"step {i}" for i in range(12)],
        },
        "app": {
            "state": "ok",
            "tag": "260e407b9d541dd5",
            "last_build_seconds": 0.531,
            "path": "local-registry",
            "last_error": None,
        },
    },
    config_errors=["devspace.yaml:10:3: error: localRegistry.locaBuild: unknown key"],
    exec={
        "command": "helm upgrade app ./chart",
        "state": "failed",
        "runs": 2,
        "failures": 1,
        "pending": True,
        "last": {
            "outcome": "exited 3",
            "started": 990.0,
            "seconds": 0.05,
            "images": ["app"],
            "ok": False,
            "tail": ["Error: UPGRADE FAILED: boom"],
        },
    },
    updated=998.2,
)

BUILT = Outcome("app", "built", "260e407b9d541dd5", "localhost:31234/app:260e407b9d541dd5", 1.23456)
FAILED = Outcome("web", "failed", None, None, 0.5, "docker build exited 1", ("step 1", "boom"))
EXEC_OK = ExecResult("helm upgrade", ("app",), 1000.0, 0.25, 0, tail=("done",))

UNREADABLE = FileResult("missing.yaml", "unreadable", message="cannot read: No such file")

TEXT = [
    pytest.param(
        CheckResult((UNREADABLE,)),
        "missing.yaml: error: cannot read: No such file\n",
        id="check-unreadable",
    ),
    pytest.param(
        UpResult(DEPLOYED),
        "registry localhost:31234 is ready\n"
        "  context    dev (https://10.0.0.1:6443)\n"
        "  namespace  devreg\n"
        "  name       registry\n"
        "  workload   Deployment\n"
        "  node port  31234\n"
        "  reach      localhost:31234 answers GET /v2/\n",
        id="up-localhost",
    ),
    pytest.param(
        # A probe result as watcher.cluster.pullprobe makes it (the real probe runs in
        # tests/watcher/cluster/pullprobe_test.py): what up prints, and its exit code.
        UpResult(
            DEPLOYED,
            ProbeResult(
                "localhost:31234",
                [
                    NodeResult("kwok-0", "skipped", says="taint fake=true:NoSchedule"),
                    NodeResult("node-0", "pulled", 0.4),
                    NodeResult(
                        "node-1",
                        "failed",
                        0.5,
                        message="dial tcp 127.0.0.1:31234: connect: connection refused",
                        cause="no-loopback-nodeport",
                        says="nothing answers",
                        fix="run kube-proxy in iptables mode",
                        snippets=["a\n  b"],
                    ),
                ],
                seconds=0.61,
            ),
        ),
        "registry localhost:31234 is ready\n"
        "  context    dev (https://10.0.0.1:6443)\n"
        "  namespace  devreg\n"
        "  name       registry\n"
        "  workload   Deployment\n"
        "  node port  31234\n"
        "  reach      localhost:31234 answers GET /v2/\n"
        "pull probe: 1 of 3 node(s) pull localhost:31234/… (0.61 s)\n"
        "  kwok-0: skipped (taint fake=true:NoSchedule)\n"
        "  node-0: pulls\n"
        "  node-1: cannot pull (no-loopback-nodeport): nothing answers\n"
        "    kubelet: dial tcp 127.0.0.1:31234: connect: connection refused\n"
        "    fix: run kube-proxy in iptables mode\n"
        "      a\n"
        "        b\n",
        id="up-probe-failed",
    ),
    pytest.param(
        UpResult(FORWARDED),
        "registry localhost:31234 is ready\n"
        "  context    dev (https://10.0.0.1:6443)\n"
        "  namespace  devreg\n"
        "  name       registry\n"
        "  workload   StatefulSet\n"
        "  node port  31234\n"
        "  reach      through a port-forward 127.0.0.1:31234 -> the registry pod "
        "(verified; it ends with this command, `devreg watch` keeps its own)\n",
        id="up-port-forward",
    ),
    pytest.param(
        UpResult(PUBLISHED),
        "registry localhost:5001 (published by the cluster, KEP-1755; nothing deployed)\n"
        "  context    kind-dev (https://127.0.0.1:40000)\n"
        "  help       https://kind.sigs.k8s.io/docs/user/local-registry/\n"
        "  reach      localhost:5001 answers GET /v2/\n",
        id="up-kep-1755",
    ),
    pytest.param(
        DownResult(
            "dev",
            "https://s",
            "devreg",
            "registry",
            ("StatefulSet/registry",),
            ("registry-registry-0",),
        ),
        "removed from namespace devreg (context dev): StatefulSet/registry\n"
        "kept volume claims: registry-registry-0 (`devreg down --purge` deletes them)\n",
        id="down-kept-claims",
    ),
    pytest.param(
        DownResult("dev", "https://s", "devreg", "registry", (), ()),
        "nothing to remove: no registry 'registry' in namespace devreg (context dev)\n",
        id="down-nothing",
    ),
    pytest.param(
        StatusResult(NOT_RUNNING, {"error": "no kubeconfig"}, now=1000.0),
        "registry: cannot tell (no kubeconfig)\nwatcher: not running\n",
        id="status-nothing",
    ),
    pytest.param(
        StatusResult(NOT_RUNNING, REGISTRY_OK, now=1000.0),
        "registry: localhost:31234 answers\n"
        "  Deployment devreg/registry (context dev), node port 31234, pod registry-5d4f-abcde Ready\n"
        "  paths: app=local-registry\n"
        "watcher: not running\n",
        id="status-registry-ready",
    ),
    pytest.param(
        StatusResult(RUNNING, REGISTRY_NOT_READY, now=1000.0),
        "registry: localhost:31234 does not answer here (connection refused)\n"
        "  Deployment devreg/registry (context dev), node port 31234, "
        "pod registry-5d4f-abcde Pending, not Ready, on node node-a\n"
        "  pod registry-5d4f-abcde: container registry: ErrImagePull: not found\n"
        "watcher: running (pid 4242), log /p/.devreg/watch.log\n"
        "  the configuration is invalid; the watcher keeps the last good one:\n"
        "    devspace.yaml:10:3: error: localRegistry.locaBuild: unknown key\n"
        "  app: ok  tag 260e407b9d541dd5  last 0.53 s  path local-registry\n"
        "  web: failed  tag -  last -  path kind-load\n"
        "    error: docker build exited 1\n"
        + "".join(f"      step {i}\n" for i in range(2, 12))
        + "  exec `helm upgrade app ./chart`: FAILED, exited 3 after 0.05 s, 10 s ago "
        "(images app); 2 run(s), 1 failed; a newer delivery waits for it\n"
        "      Error: UPGRADE FAILED: boom\n"
        "  (status written 2 s ago)\n",
        id="status-watcher-and-pod-problems",
    ),
    pytest.param(
        StatusResult(
            WatcherStatus(
                running=False,
                pid=None,
                log_path=Path("/p/.devreg/watch.log"),
                log_written=True,
                images={"app": {"state": "building", "tag": "abc", "last_build_seconds": 2}},
                config_errors=[],
                exec={"command": "make deploy", "state": "running", "running_since": 993.0},
                updated=None,
            ),
            {"error": "no kubeconfig"},
            now=1000.0,
        ),
        "registry: cannot tell (no kubeconfig)\n"
        "watcher: not running (last state below)\n"
        "  app: building  tag abc  last 2.00 s  path -\n"
        "  exec `make deploy`: running for 7 s\n",
        id="status-last-state-exec-running",
    ),
    pytest.param(
        BuildResult((BUILT, FAILED), Path("/p/.devreg.env"), EXEC_OK),
        "wrote /p/.devreg.env\n",
        id="build",
    ),
    pytest.param(
        WatchResult(pid=4242, log=Path("/p/.devreg/watch.log")),
        "devreg watcher running in the background (pid 4242); log: /p/.devreg/watch.log\n"
        "`devreg status` shows it, `devreg stop` ends it\n",
        id="watch-detached",
    ),
    pytest.param(WatchResult(), "", id="watch-foreground"),
    pytest.param(
        StopResult("not-running"),
        "no devreg watcher is running for this project\n",
        id="stop-not-running",
    ),
    pytest.param(
        StopResult("no-pid"),
        "a devreg watcher holds the lock but wrote no pid file; cannot stop it\n",
        id="stop-no-pid",
    ),
    pytest.param(
        StopResult("stopped", 4242), "stopped the devreg watcher (pid 4242)\n", id="stop-stopped"
    ),
    pytest.param(
        StopResult("killed", 4242, timeout=15.0),
        "the watcher (pid 4242) did not stop within 15 s; killed it\n",
        id="stop-killed",
    ),
    pytest.param(
        EnvResult({"RUNTIME_IMAGES_APP": "localhost:1/app:t", "DEVREG_REGISTRY": "localhost:1"}),
        "# Written by devreg: the images the cluster should run. Do not edit.\n"
        "# Load it with: . ./.devreg.env\n"
        "export DEVREG_REGISTRY=localhost:1\n"
        "export RUNTIME_IMAGES_APP=localhost:1/app:t\n",
        id="env-dotenv",
    ),
]


@pytest.mark.parametrize(("result", "expected"), TEXT)
def test_text(result: Result, expected: str) -> None:
    out = io.StringIO()
    write(result, "text", out)
    assert out.getvalue() == expected


def test_env_text_is_its_dotenv_format() -> None:
    out = io.StringIO()
    write(EnvResult({"A": "1"}), "dotenv", out)
    assert out.getvalue().endswith("export A=1\n")


JSON = [
    pytest.param(
        CheckResult((UNREADABLE,)),
        """\
{
  "version": 1,
  "ok": false,
  "files": [
    {
      "file": "missing.yaml",
      "status": "unreadable",
      "message": "cannot read: No such file",
      "diagnostics": [],
      "preview": null
    }
  ],
  "summary": {
    "files": 1,
    "errors": 0,
    "warnings": 0
  }
}
""",
        id="check-unreadable",
    ),
    pytest.param(
        UpResult(FORWARDED),
        """\
{
  "context": "dev",
  "host": "localhost:31234",
  "kep1755": null,
  "name": "registry",
  "namespace": "devreg",
  "node_port": 31234,
  "pod": "registry-0",
  "pull_probe": null,
  "push_host": "127.0.0.1:31234",
  "reach": "port-forward",
  "reach_error": null,
  "reachable": true,
  "server": "https://10.0.0.1:6443",
  "source": "deployed",
  "workload_kind": "StatefulSet"
}
""",
        id="up-port-forward",
    ),
    pytest.param(
        UpResult(PUBLISHED),
        """\
{
  "context": "kind-dev",
  "host": "localhost:5001",
  "kep1755": {
    "help": "https://kind.sigs.k8s.io/docs/user/local-registry/",
    "host": "localhost:5001",
    "host_from_cluster_network": null,
    "host_from_container_runtime": null
  },
  "name": null,
  "namespace": null,
  "node_port": null,
  "pod": null,
  "pull_probe": null,
  "push_host": "localhost:5001",
  "reach": "kep-1755",
  "reach_error": null,
  "reachable": true,
  "server": "https://127.0.0.1:40000",
  "source": "kep-1755",
  "workload_kind": null
}
""",
        id="up-kep-1755",
    ),
    pytest.param(
        DownResult(
            "dev",
            "https://s",
            "devreg",
            "registry",
            ("Service/registry",),
            ("registry-registry-0",),
        ),
        """\
{
  "context": "dev",
  "kept_claims": [
    "registry-registry-0"
  ],
  "name": "registry",
  "namespace": "devreg",
  "removed": [
    "Service/registry"
  ],
  "server": "https://s"
}
""",
        id="down",
    ),
    pytest.param(
        StatusResult(NOT_RUNNING, {"error": "no kubeconfig"}, now=1000.0),
        """\
{
  "registry": {
    "error": "no kubeconfig"
  },
  "watcher": {
    "config_errors": [],
    "exec": null,
    "images": {},
    "log": null,
    "pid": null,
    "running": false,
    "updated": null
  }
}
""",
        id="status-nothing",
    ),
    pytest.param(
        StatusResult(
            WatcherStatus(
                running=True,
                pid=4242,
                log_path=Path("/p/.devreg/watch.log"),
                log_written=True,
                images={"app": {"tag": "abc", "state": "ok"}},
                config_errors=["x"],
                exec={"state": "ok", "command": "c"},
                updated=998.25,
            ),
            {"pod_ready": False, "deployed": True, "kep1755": None},
            now=1000.0,
        ),
        """\
{
  "registry": {
    "deployed": true,
    "kep1755": null,
    "pod_ready": false
  },
  "watcher": {
    "config_errors": [
      "x"
    ],
    "exec": {
      "command": "c",
      "state": "ok"
    },
    "images": {
      "app": {
        "state": "ok",
        "tag": "abc"
      }
    },
    "log": "/p/.devreg/watch.log",
    "pid": 4242,
    "running": true,
    "updated": 998.25
  }
}
""",
        id="status-running",
    ),
    pytest.param(
        BuildResult((BUILT, FAILED), Path("/p/.devreg.env")),
        """\
{
  "images": {
    "app": {
      "state": "built",
      "tag": "260e407b9d541dd5",
      "reference": "localhost:31234/app:260e407b9d541dd5",
      "seconds": 1.235,
      "error": null,
      "log_tail": []
    },
    "web": {
      "state": "failed",
      "tag": null,
      "reference": null,
      "seconds": 0.5,
      "error": "docker build exited 1",
      "log_tail": [
        "step 1",
        "boom"
      ]
    }
  },
  "env_file": "/p/.devreg.env",
  "exec": null
}
""",
        id="build",
    ),
    pytest.param(
        BuildResult((BUILT,), Path("/p/.devreg.env"), EXEC_OK),
        """\
{
  "images": {
    "app": {
      "state": "built",
      "tag": "260e407b9d541dd5",
      "reference": "localhost:31234/app:260e407b9d541dd5",
      "seconds": 1.235,
      "error": null,
      "log_tail": []
    }
  },
  "env_file": "/p/.devreg.env",
  "exec": {
    "ok": true,
    "exit_code": 0,
    "outcome": "exited 0",
    "cancelled": false,
    "started": 1000.0,
    "seconds": 0.25,
    "images": [
      "app"
    ],
    "tail": [
      "done"
    ],
    "error": null
  }
}
""",
        id="build-exec",
    ),
    pytest.param(
        EnvResult({"RUNTIME_IMAGES_APP": "localhost:1/app:t", "DEVREG_REGISTRY": "localhost:1"}),
        """\
{
  "DEVREG_REGISTRY": "localhost:1",
  "RUNTIME_IMAGES_APP": "localhost:1/app:t"
}
""",
        id="env",
    ),
]


@pytest.mark.parametrize(("result", "expected"), JSON)
def test_json(result: Result, expected: str) -> None:
    out = io.StringIO()
    write(result, "json", out)
    assert out.getvalue() == expected


@pytest.mark.parametrize(
    "result",
    [
        pytest.param(WatchResult(pid=1, log=Path("/p/log")), id="watch"),
        pytest.param(StopResult("stopped", 1), id="stop"),
    ],
)
def test_commands_without_format_have_no_json(result: Result) -> None:
    with pytest.raises(TypeError, match="no JSON form"):
        write(result, "json", io.StringIO())


@pytest.mark.parametrize(("result", "expected"), TEXT)
def test_text_in_colour_is_the_same_text(result: Result, expected: str) -> None:
    """Colour only adds escapes around words; taking them out gives the text back."""
    out = io.StringIO()
    write(result, "text", out, color=True)
    assert re.sub(r"\033\[[0-9;]*m", "", out.getvalue()) == expected


def test_status_colours_what_makes_it_exit_1() -> None:
    out = io.StringIO()
    write(StatusResult(RUNNING, {"error": "no kubeconfig"}, 0.0), "text", out, color=True)
    text = out.getvalue()
    assert "registry: \033[33mcannot tell\033[0m (no kubeconfig)" in text  # yellow: unknown
    assert "  web: \033[31mfailed\033[0m  tag -" in text  # red: failing
    assert "    \033[31merror:\033[0m docker build exited 1" in text
    assert "\033[31mthe configuration is invalid\033[0m" in text
    assert "\033[31mFAILED\033[0m" in text
    out = io.StringIO()
    write(StatusResult(NOT_RUNNING, {"error": "x"}, 0.0), "text", out, color=True)
    assert "watcher: \033[33mnot running\033[0m" in out.getvalue()


@pytest.mark.parametrize(
    "result",
    [
        pytest.param(StatusResult(RUNNING, {"error": "x"}, 0.0), id="status"),
        pytest.param(StopResult("stopped", 42), id="stop"),
        pytest.param(WatchResult(pid=42, log=Path("/p/.devreg/watch.log")), id="watch-detach"),
    ],
)
def test_quiet_text_is_empty(result: Result) -> None:
    """-q: the exit code says it (env and check keep theirs: main_test)."""
    out = io.StringIO()
    write(result, "text", out, quiet=True)
    assert out.getvalue() == ""


def test_status_text_escapes_control_characters_from_disk_and_cluster() -> None:
    """A planted status.json or a pod's message must not drive the terminal (issue 15):
    ESC sequences and other control characters are printed as escapes."""
    evil = "\x1b]0;owned\x07\x1b[2J"
    watcher = dataclasses.replace(
        RUNNING,
        images={"app\x1b[31m": {"state": "failed", "tag": None, "last_error": evil}},
        config_errors=[f"devspace.yaml:1:1: error: {evil}"],
    )
    registry = {"error": f"cannot reach {evil}"}
    out = io.StringIO()
    report.write_text(StatusResult(watcher, registry, now=1000.0), out)
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;owned\\x07" in text


def test_up_exits_1_when_a_node_cannot_pull_and_0_when_the_probe_could_not_run() -> None:
    failed = next(p.values[0] for p in TEXT if p.id == "up-probe-failed")
    assert failed.exit_code == 1
    assert UpResult(DEPLOYED).exit_code == 0
    could_not = ProbeResult("localhost:31234", error="pods/create forbidden")
    assert UpResult(DEPLOYED, could_not).exit_code == 0
