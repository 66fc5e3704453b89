"""devreg's real test environment: Docker Engine, a registry, a Kubernetes control plane.

    scripts/testenv up [PART...]   start what is not running (idempotent), print exports
    scripts/testenv env            print the exports of the running environment
    scripts/testenv down [PART...] stop every process that `up` started (or PARTs and
                                   what needs them), undo what they set up
    scripts/testenv status         which part runs, each process's memory (stderr); exit 1 if down
    scripts/testenv build          build (or find cached) the Kubernetes binaries only

PARTs: docker, images, registry, kube, nodes, kind, buildkit, proxy (default: all eight, in that
order).

Only `export NAME=value` lines go to stdout, so `eval "$(scripts/testenv up)"` works;
progress and errors go to stderr.  Python 3.11 standard library only: this runs before
`pip install -e .`.  See docs/testenv.md.

Environment knobs:
    DEVREG_TESTENV_DIR      state dir (pids, ports, certs, logs, data); /tmp/devreg-testenv
    DEVREG_TESTENV_CACHE    built binaries, by version; ~/.cache/devreg-testenv
    DEVREG_TESTENV_GO       the go command; `go` on PATH, else /usr/local/go/bin/go
    DEVREG_TESTENV_K8S_VERSION, DEVREG_TESTENV_ETCD_VERSION, DEVREG_TESTENV_KWOK_VERSION
    DEVREG_TESTENV_REGISTRY_PORT, DEVREG_TESTENV_APISERVER_PORT   fixed ports (else free ones,
                            chosen once and kept in the state dir)
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from . import buildkit, controlplane, docker, images, kind, nodes, proxy, registry
from .common import (
    STATE,
    Part,
    PartError,
    load_state,
    locked,
    log,
    proc_alive,
    save_state,
    stop_process,
)
from .gobuild import build_all
from .provisioner import provisioner_loop

# The parts, in start order: `up` without PARTs brings up all of them, `down` stops
# their processes in reverse.  A new part is a module with a Part and one line here.
PARTS: dict[str, Part] = {
    "docker": docker.PART,
    "images": images.PART,
    "registry": registry.PART,
    "kube": controlplane.PART,
    "nodes": nodes.PART,
    "kind": kind.PART,
    "buildkit": buildkit.PART,
    "proxy": proxy.PART,
}
PROCESSES = tuple(name for part in PARTS.values() for name in part.processes)


# ---------------------------------------------------------------------------------------
# up / env / down / status


def exports(state: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = [("DEVREG_TESTENV_DIR", str(STATE))]
    for name, part in PARTS.items():
        if name in state["parts"]:
            out += part.exports(state)
    return out


def print_exports(state: dict[str, Any]) -> None:
    for name, value in exports(state):
        print(f"export {name}={shlex.quote(value)}")
    sys.stdout.flush()


def part_problems(state: dict[str, Any], part: str) -> list[str]:
    """Why ``part`` is not running (empty when it is)."""
    return PARTS[part].problems(state) if part in PARTS else []


def with_needs(parts: list[str]) -> list[str]:
    """``parts`` and the parts they need, in PARTS order."""
    wanted = set(parts)
    todo = list(parts)
    while todo:
        for need in PARTS[todo.pop()].needs:
            if need not in wanted:
                wanted.add(need)
                todo.append(need)
    return [p for p in PARTS if p in wanted]


def cmd_up(parts: list[str]) -> int:
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        log(f"unknown part(s) {', '.join(unknown)}; parts: {', '.join(PARTS)}")
        return 2
    wanted = with_needs(parts or list(PARTS))
    STATE.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    state = load_state()
    for part in wanted:
        t = time.monotonic()
        PARTS[part].up(state)
        if part not in state["parts"]:
            state["parts"].append(part)
        save_state(state)
        log(f"{part}: up ({time.monotonic() - t:.1f}s)")
    log(f"up in {time.monotonic() - t0:.1f}s; state in {STATE}")
    print_exports(state)
    return 0


def cmd_env() -> int:
    state = load_state()
    if not state["parts"]:
        log(f"no environment in {STATE}; run: scripts/testenv up")
        return 1
    problems = [f"{part}: {p}" for part in state["parts"] for p in part_problems(state, part)]
    if problems:
        for p in problems:
            log(p)
        log("the environment is not (fully) running; run: scripts/testenv up")
        return 1
    print_exports(state)
    return 0


def cmd_status() -> int:
    state = load_state()
    rc = 0
    for part in PARTS:
        if part not in state["parts"]:
            log(f"{part}: not started here")
            continue
        problems = part_problems(state, part)
        log(f"{part}: {'running' if not problems else '; '.join(problems)}")
        rc = rc or (1 if problems else 0)
    total = 0
    for name, rec in state["procs"].items():
        if proc_alive(state, name):
            kib = rss_kib(int(rec["pid"]))
            total += kib
            log(f"  {name}: pid {rec['pid']}, RSS {kib / 1024:.0f} MiB (with its children)")
        else:
            log(f"  {name}: pid {rec['pid']} gone")
    for part_name, record in PARTS.items():
        if record.memory is not None and part_name in state["parts"]:
            for what, pids in record.memory(state):
                kib = sum(rss_kib(pid) for pid in pids)
                total += kib
                log(f"  {what}: {len(pids)} processes, RSS {kib / 1024:.0f} MiB (with children)")
    if total:
        log(f"  memory: {total / 1024:.0f} MiB RSS in all")
    return rc if state["parts"] else 1


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (dockerd's containerd), in KiB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def dependents(parts: list[str]) -> list[str]:
    """``parts`` and the parts that need them, in PARTS order."""
    wanted = set(parts)
    changed = True
    while changed:
        changed = False
        for name, part in PARTS.items():
            if name not in wanted and wanted & set(part.needs):
                wanted.add(name)
                changed = True
    return [p for p in PARTS if p in wanted]


def cmd_down(purge: bool, parts: list[str] | None = None) -> int:
    """Stop every part (or ``parts`` and what needs them), in reverse start order."""
    unknown = [p for p in parts or [] if p not in PARTS]
    if unknown:
        log(f"unknown part(s) {', '.join(unknown)}; parts: {', '.join(PARTS)}")
        return 2
    state = load_state()
    chosen = dependents(parts) if parts else list(PARTS)
    for name in reversed(chosen):
        part = PARTS[name]
        if part.down is not None:
            part.down(state)
        for proc in reversed(part.processes):
            if proc == "dockerd" and not state.get("owned_dockerd"):
                continue
            stop_process(state, proc, timeout=60 if proc == "dockerd" else 20)
        if name in state["parts"]:
            state["parts"].remove(name)
    if parts:
        save_state(state)
        log(f"down: {', '.join(chosen)}")
        return 0
    for name in list(state["procs"]):
        stop_process(state, name)
    state["parts"] = []
    state["owned_dockerd"] = False
    save_state(state)
    if purge:
        log(f"removing {STATE}")
        shutil.rmtree(STATE, ignore_errors=True)
    log("down")
    return 0


# ---------------------------------------------------------------------------------------
# CLI


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__, file=sys.stderr)
        return 0 if argv else 2
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "build":
            build_all()
            return 0
        if cmd == "up":
            with locked(STATE / ".lock", "`scripts/testenv up` or `down`"):
                return cmd_up(args)
        if cmd == "env":
            return cmd_env()
        if cmd == "status":
            return cmd_status()
        if cmd == "down":
            with locked(STATE / ".lock", "`scripts/testenv up` or `down`"):
                return cmd_down(purge="--purge" in args, parts=[a for a in args if a != "--purge"])
        if cmd == "_provisioner":
            return provisioner_loop()
        log(f"unknown command {cmd!r}")
        print(__doc__, file=sys.stderr)
        return 2
    except PartError as e:
        print(e.render(), file=sys.stderr)
        return 1
