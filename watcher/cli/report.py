"""Collect results, then report (check-jsonschema's ``reporter.py``): any
command's result (:mod:`watcher.cli.results`) as text, or as one JSON document
on stdout. The JSON keys are the ones the README and docs/ show; the files of
``devreg check`` and ``devreg preview`` are reported by :mod:`hookpkg.report`.

``devreg env``'s text is ``.devreg.env``'s own format (``-o dotenv``).
``devreg watch`` and ``devreg stop`` take no ``-o``: they have text only.

``-q`` keeps only what is wrong in the text: ``check``'s diagnostics without
the preview, nothing from the other commands (their exit code says it), and
``env``'s variables (its output is the data asked for). ``color`` paints
errors and warnings.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO, assert_never

from hookpkg.color import RED, YELLOW, paint
from hookpkg.errors import printable
from watcher.cli.results import (
    BuildResult,
    CheckResult,
    DownResult,
    EnvResult,
    Result,
    StatusResult,
    StopResult,
    UpResult,
    WatchResult,
)

if TYPE_CHECKING:
    from watcher.cluster.registry import RegistryEndpoint


def write(
    result: Result, fmt: str, out: TextIO, *, quiet: bool = False, color: bool = False
) -> None:
    """``fmt`` is the command's ``-o``: ``json``, else its text form."""
    if fmt == "json":
        write_json(result, out)
    else:
        write_text(result, out, quiet=quiet, color=color)


# --- text -------------------------------------------------------------------


def write_text(result: Result, out: TextIO, *, quiet: bool = False, color: bool = False) -> None:
    match result:
        case CheckResult():
            from hookpkg import report as hook_report  # only check/preview load the hook's

            hook_report.write_text(list(result.files), out, show_preview=not quiet, color=color)
        case EnvResult():
            from watcher.daemon import dotenv

            out.write(dotenv.render(result.variables))
        case _ if quiet:
            pass
        case StatusResult():
            out.writelines(f"{line}\n" for line in status_lines(result, color=color))
        case _:
            out.writelines(f"{line}\n" for line in text_lines(result))


def text_lines(
    result: UpResult | DownResult | StatusResult | BuildResult | WatchResult | StopResult,
) -> list[str]:
    match result:
        case UpResult():
            return up_lines(result.endpoint) + probe_lines(
                result.probe.as_json() if result.probe else None
            )
        case DownResult():
            return down_lines(result)
        case StatusResult():
            return status_lines(result)
        case BuildResult():
            return [f"wrote {result.env_file}"]
        case WatchResult():
            if result.pid is None:
                return []
            return [
                f"devreg watcher running in the background (pid {result.pid}); log: {result.log}",
                "`devreg status` shows it, `devreg stop` ends it",
            ]
        case StopResult():
            return [stop_line(result)]
        case _:
            assert_never(result)


def up_lines(endpoint: RegistryEndpoint) -> list[str]:
    if endpoint.source == "kep-1755":
        lines = [
            f"registry {endpoint.host} (published by the cluster, KEP-1755; nothing deployed)",
            f"  context    {endpoint.context} ({endpoint.server})",
        ]
        if endpoint.kep1755 and endpoint.kep1755.help:
            lines.append(f"  help       {endpoint.kep1755.help}")
    else:
        lines = [
            f"registry {endpoint.host} is ready",
            f"  context    {endpoint.context} ({endpoint.server})",
            f"  namespace  {endpoint.namespace}",
            f"  name       {endpoint.name}",
            f"  workload   {endpoint.workload_kind}",
            f"  node port  {endpoint.node_port}",
        ]
    if endpoint.reach == "localhost" or endpoint.reach == "kep-1755":
        lines.append(f"  reach      {endpoint.host} answers GET /v2/")
    elif endpoint.reach == "port-forward":
        lines.append(
            f"  reach      through a port-forward {endpoint.push_host} -> the registry pod "
            "(verified; it ends with this command, `devreg watch` keeps its own)"
        )
    return lines


def probe_lines(probe: Mapping[str, Any] | None) -> list[str]:
    if probe is None:
        return []
    from watcher.cluster.pullprobe import format_probe

    return format_probe(probe)


def down_lines(result: DownResult) -> list[str]:
    where = f"namespace {result.namespace} (context {result.context})"
    if result.removed:
        lines = [f"removed from {where}: {', '.join(result.removed)}"]
    else:
        lines = [f"nothing to remove: no registry {result.name!r} in {where}"]
    if result.kept_claims:
        lines.append(
            f"kept volume claims: {', '.join(result.kept_claims)} "
            "(`devreg down --purge` deletes them)"
        )
    return lines


def _printable(value: Any) -> Any:
    """``value`` with every string in it made safe for a terminal."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, Mapping):
        return {printable(str(k)): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def status_lines(result: StatusResult, *, color: bool = False) -> list[str]:
    """What ``devreg status`` prints; with ``color``, what makes it exit 1 in
    red (failing) or yellow (cannot be told, or not running). A status file of a
    shape the watcher never writes (edited, planted) is not shown, and says so."""
    try:
        return _status_lines(result, color=color)
    except (TypeError, AttributeError, KeyError, ValueError, IndexError):
        blank = dataclasses.replace(
            result.watcher, images={}, config_errors=[], exec=None, updated=None
        )
        lines = _status_lines(dataclasses.replace(result, watcher=blank), color=color)
        return [
            *lines,
            f"  ({result.watcher.log_path.parent / 'status.json'} has a shape devreg never "
            "writes: not shown)",
        ]


def _status_lines(result: StatusResult, *, color: bool = False) -> list[str]:
    # What the status file and the cluster said reaches the terminal escaped: a
    # planted status.json or a pod message must not send ESC sequences (issue 15).
    registry = _printable(result.registry)
    watcher = dataclasses.replace(
        result.watcher,
        images=_printable(result.watcher.images),
        config_errors=_printable(list(result.watcher.config_errors)),
        exec=_printable(result.watcher.exec),
    )

    def bad(text: str) -> str:
        return paint(text, RED, color)

    def unknown(text: str) -> str:
        return paint(text, YELLOW, color)

    if "error" in registry:
        lines = [f"registry: {unknown('cannot tell')} ({registry['error']})"]
    else:
        from watcher.cluster.registry import format_status

        lines = format_status(registry) + [
            f"  {line}" for line in probe_lines(registry.get("pull_probe"))
        ]
    if watcher.running:
        lines.append(f"watcher: running (pid {watcher.pid}), log {watcher.log_path}")
    else:
        lines.append(
            f"watcher: {unknown('not running')}" + (" (last state below)" if watcher.images else "")
        )
    if watcher.config_errors:
        lines.append(
            f"  {bad('the configuration is invalid')}; the watcher keeps the last good one:"
        )
        lines += [f"    {line}" for line in watcher.config_errors]
    for key, info in sorted(watcher.images.items()):
        seconds = info.get("last_build_seconds")
        took = f"{seconds:.2f} s" if isinstance(seconds, (int, float)) else "-"
        state = str(info.get("state"))
        lines.append(
            f"  {key}: {bad(state) if state == 'failed' else state}  tag {info.get('tag') or '-'}  "
            f"last {took}  path {info.get('path') or '-'}"
        )
        if info.get("last_error"):
            lines.append(f"    {bad('error:')} {info['last_error']}")
            lines += [f"      {line}" for line in info.get("last_error_tail", [])[-10:]]
    if isinstance(watcher.exec, dict):
        lines += [f"  {line}" for line in exec_lines(watcher.exec, now=result.now, color=color)]
    if isinstance(watcher.updated, (int, float)):
        lines.append(f"  (status written {result.now - watcher.updated:.0f} s ago)")
    return lines


def exec_lines(info: Mapping[str, Any], *, now: float, color: bool = False) -> list[str]:
    """The ``--exec`` command: its state and last run, then that run's last
    lines when it failed::

        exec `helm upgrade …`: FAILED, exited 3 after 0.05 s, 2 s ago (images app); 2 runs, 1 failed
            Error: UPGRADE FAILED: …
    """
    last = info.get("last")
    runs = f"{info.get('runs', 0)} run(s), {info.get('failures', 0)} failed"
    if info.get("state") == "running":
        since = info.get("running_since") or now
        words = f"running for {now - since:.0f} s"
        if last:
            words += f" (previous run: {last['outcome']})"
    elif not last:
        words = "not run yet"
    else:
        state = {"ok": "ok", "failed": paint("FAILED", RED, color)}.get(
            str(info.get("state")), "stopped"
        )
        ago = now - last["started"] - last["seconds"]
        images = " ".join(last.get("images") or []) or "-"
        words = (
            f"{state}, {last['outcome']} after {last['seconds']:.2f} s, {ago:.0f} s ago "
            f"(images {images}); {runs}"
        )
    if info.get("pending"):
        words += "; a newer delivery waits for it"
    lines = [f"exec `{info.get('command')}`: {words}"]
    if last and not last.get("ok") and info.get("state") != "running":
        lines += [f"    {line}" for line in (last.get("tail") or [])[-10:]]
    return lines


def stop_line(result: StopResult) -> str:
    match result.outcome:
        case "not-running":
            return "no devreg watcher is running for this project"
        case "no-pid":
            return "a devreg watcher holds the lock but wrote no pid file; cannot stop it"
        case "killed":
            return (
                f"the watcher (pid {result.pid}) did not stop within {result.timeout:.0f} s; "
                "killed it"
            )
        case "stopped":
            return f"stopped the devreg watcher (pid {result.pid})"
        case _:
            assert_never(result.outcome)


# --- JSON -------------------------------------------------------------------


def write_json(result: Result, out: TextIO) -> None:
    match result:
        case CheckResult():
            from hookpkg import report as hook_report

            hook_report.write_json(list(result.files), out)
        case EnvResult():
            from watcher.daemon import dotenv

            out.write(dotenv.to_json(result.variables))
        case UpResult():
            probe = result.probe.as_json() if result.probe else None
            _dump({**result.endpoint.as_json(), "pull_probe": probe}, out, sort_keys=True)
        case DownResult():
            _dump(down_json(result), out, sort_keys=True)
        case StatusResult():
            _dump(status_json(result), out, sort_keys=True)
        case BuildResult():
            _dump(build_json(result), out, sort_keys=False)  # images, env_file, exec
        case WatchResult() | StopResult():
            raise TypeError(f"{type(result).__name__} has no JSON form (no --format)")
        case _:
            assert_never(result)


def _dump(doc: Mapping[str, Any], out: TextIO, *, sort_keys: bool) -> None:
    json.dump(doc, out, indent=2, sort_keys=sort_keys)
    out.write("\n")


def down_json(result: DownResult) -> dict[str, Any]:
    return {
        "context": result.context,
        "server": result.server,
        "namespace": result.namespace,
        "name": result.name,
        "removed": list(result.removed),
        "kept_claims": list(result.kept_claims),
    }


def status_json(result: StatusResult) -> dict[str, Any]:
    w = result.watcher
    return {
        "watcher": {
            "running": w.running,
            "pid": w.pid,
            "log": str(w.log_path) if w.log_written else None,
            "images": w.images,
            "config_errors": w.config_errors,
            "exec": w.exec,
            "updated": w.updated,
        },
        "registry": result.registry,
    }


def build_json(result: BuildResult) -> dict[str, Any]:
    ran = result.exec_result
    return {
        "images": {
            o.key: {
                "state": o.state,
                "tag": o.tag,
                "reference": o.reference,
                "seconds": round(o.seconds, 3),
                "error": o.error,
                "log_tail": list(o.tail),
            }
            for o in result.images
        },
        "env_file": str(result.env_file),
        "exec": ran.as_json() if ran is not None else None,
    }
