"""``devreg``'s command line: the only module that knows about argparse.

Each command is a plain function taking keyword arguments and returning its
result (:mod:`watcher.cli.results`); :mod:`watcher.cli.report` prints it as
text or JSON, and the result says the exit code. Each flag is registered on
the commands that use it. Command modules are imported lazily so that
``devreg check`` (the pre-commit hook, run on every commit) never imports
docker, kubernetes or watchdog.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from watcher.cli.results import Result

# command -> (module, function)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("watcher.cli.commands.check", "check"),
    "preview": ("watcher.cli.commands.preview", "preview"),
    "up": ("watcher.cli.commands.up", "up"),
    "down": ("watcher.cli.commands.down", "down"),
    "status": ("watcher.cli.commands.status", "status"),
    "build": ("watcher.cli.commands.build", "build"),
    "watch": ("watcher.cli.commands.watch", "watch"),
    "stop": ("watcher.cli.commands.stop", "stop"),
    "env": ("watcher.cli.commands.env", "env"),
}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _node_port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (1-65535): {value}")
    return value


def _config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path("devspace.yaml"),
        help="the DevSpace config (default: ./devspace.yaml)",
    )


def _context_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--context", help="kubeconfig context (default: the current one)")


def _namespace_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--namespace",
        help="namespace of the registry (default: localRegistry.namespace, "
        "else the context's namespace)",
    )


def _format_flag(p: argparse.ArgumentParser, formats: tuple[str, ...] = ("text", "json")) -> None:
    p.add_argument(
        "--format", dest="fmt", choices=formats, default=formats[0], help="output format"
    )


def _cluster_flags(p: argparse.ArgumentParser) -> None:
    """What a command that talks to the registry in the cluster takes."""
    _config_flag(p)
    _context_flag(p)
    _namespace_flag(p)


def _exec_flag(p: argparse.ArgumentParser, when: str) -> None:
    p.add_argument(
        "--exec",
        dest="exec_command",
        metavar="CMD",
        help=f"run the shell command CMD {when}, from the config's directory, with the "
        "variables of .devreg.env and DEVREG_IMAGES in its environment",
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devreg",
        description="DevSpace's localRegistry for any project: validate and preview image "
        "rewrites, deploy a registry into the cluster, rebuild and deliver images on change.",
    )
    parser.add_argument(
        "-V",
        "--version",
        action=_VersionAction,
        nargs=0,
        dest="version",
        default=argparse.SUPPRESS,
        help="show the version and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "check", help="validate localRegistry and preview rewrites (the pre-commit hook)"
    )
    _config_flag(p)
    _context_flag(p)  # kind's context name decides the kind-load path
    _format_flag(p)
    p.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILES",
        help="config files (default: the --config file)",
    )
    p.add_argument("--node-port", type=_node_port, help="preview with this node port")

    p = sub.add_parser("preview", help="show how every image URL will be rewritten")
    _cluster_flags(p)  # the namespace for --cluster
    _format_flag(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--node-port", type=_node_port, help="substitute this node port")
    group.add_argument(
        "--cluster",
        action="store_true",
        help="ask the current cluster for the registry's node port and KEP-1755 registry",
    )

    p = sub.add_parser(
        "up", help="deploy the registry into the cluster, wait until it is ready, reach it"
    )
    _cluster_flags(p)
    _format_flag(p)
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=120.0,
        help="seconds to wait until the registry is ready and answers here (default 120)",
    )

    p = sub.add_parser("down", help="remove the registry from the cluster")
    _cluster_flags(p)
    _format_flag(p)
    p.add_argument("--purge", action="store_true", help="also delete the registry's volume claims")

    p = sub.add_parser("status", help="the registry and the background watcher, per image")
    _cluster_flags(p)
    _format_flag(p)

    p = sub.add_parser("build", help="one build-and-deliver pass, then write .devreg.env")
    _cluster_flags(p)
    _format_flag(p)
    p.add_argument("keys", nargs="*", metavar="KEY", help="image keys (default: all)")
    _exec_flag(p, "once after the pass, when an image was delivered")
    p.add_argument(
        "--timeout", type=_positive_float, default=120.0, help="seconds to wait for the registry"
    )

    p = sub.add_parser("watch", help="rebuild and deliver images when their sources change")
    _cluster_flags(p)
    p.add_argument("--detach", action="store_true", help="run in the background (log in .devreg/)")
    p.add_argument(
        "--debounce",
        type=_positive_float,
        default=0.05,
        help="quiet period in seconds before a rebuild (default 0.05)",
    )
    p.add_argument(
        "--jobs", type=int, default=None, help="images built in parallel (default: CPUs)"
    )
    _exec_flag(p, "after each round of deliveries (`.devreg.env` already written)")
    p.add_argument(
        "--timeout", type=_positive_float, default=120.0, help="seconds to wait for the registry"
    )

    p = sub.add_parser("stop", help="stop the background watcher")
    _config_flag(p)

    p = sub.add_parser("env", help="print the image variables")
    _config_flag(p)
    _format_flag(p, ("dotenv", "json"))
    p.add_argument("--image", metavar="KEY", help="only this image's variables")
    return parser


class _VersionAction(argparse.Action):
    """``--version`` without reading package metadata on every run (the hook's
    start-up time matters)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.exit(message=f"devreg {_version()}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("devreg")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0+unknown"


class Invocation(NamedTuple):
    """One command line, parsed: the command, its keyword arguments, and the
    format its result is reported in (its ``--format``, else its text form)."""

    command: str
    options: Mapping[str, Any]
    fmt: str = "text"


def parse(argv: Sequence[str] | None = None) -> Invocation:
    """Raises SystemExit as argparse does: 2 for a usage error, 0 for --help."""
    args = vars(make_parser().parse_args(argv))
    command = args.pop("command")
    fmt = args.pop("fmt", "text")
    return Invocation(command, MappingProxyType(args), fmt)


def _command(name: str) -> Callable[..., Result]:
    module, func = COMMANDS[name]
    fn: Callable[..., Result] = getattr(importlib.import_module(module), func)
    return fn


def run(invocation: Invocation) -> int:
    """Run the command, report its result on stdout; its exit code."""
    from watcher.cli.report import write

    result = _command(invocation.command)(**invocation.options)
    write(result, invocation.fmt, sys.stdout)
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    try:
        invocation = parse(argv)
    except SystemExit as e:  # argparse: 2 for usage errors, 0 for --help
        return int(e.code or 0)
    from watcher.cli.errors import run_command

    return run_command(lambda: run(invocation))


if __name__ == "__main__":
    raise SystemExit(main())
