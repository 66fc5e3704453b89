"""``devreg``'s command line: the only module that knows about argparse.

Each command is a plain function taking keyword arguments and returning its
result (:mod:`watcher.cli.results`); :mod:`watcher.cli.report` prints it as
text or JSON, and the result says the exit code. Each flag is registered on
the commands that use it. Command modules are imported lazily so that
``devreg check`` (the pre-commit hook, run on every commit) never imports
docker, kubernetes or watchdog, which only the ``runtime`` extra installs.

The flags follow kubectl's and DevSpace's habits (``-n``, ``--kubeconfig``,
``-o json``), each on the commands that use it; ``-q``/``-v``/``--color`` are on
every command and travel as one :class:`~watcher.console.Console`.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from hookpkg.errors import FatalError
from watcher.console import COLOR_CHOICES, NORMAL, QUIET, VERBOSE, Console

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
# The commands of the runtime half: they need the ``runtime`` extra. ``check``
# and ``preview`` are the hook's, and run with PyYAML alone.
RUNTIME_COMMANDS = frozenset(COMMANDS) - {"check", "preview"}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):  # nan would make every wait endless, inf never time out
        raise argparse.ArgumentTypeError(f"not a finite number of seconds: {text!r}")
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


def _output_flags(p: argparse.ArgumentParser) -> None:
    """On every command: how much to say, and whether in colour."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const=QUIET,
        help="only errors and warnings (the exit code says the rest); "
        "no preview from check, nothing from status",
    )
    group.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="store_const",
        const=VERBOSE,
        help="also the commands devreg runs and the API requests it makes",
    )
    p.set_defaults(verbosity=NORMAL)
    p.add_argument(
        "--color",
        choices=COLOR_CHOICES,
        default="auto",
        help="colour errors and warnings (default auto: on a terminal, unless NO_COLOR is set)",
    )


def _context_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        help="the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config); "
        "what devreg runs (--exec CMD, the background watcher) gets it as KUBECONFIG",
    )


def _namespace_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-n",
        "--namespace",
        help="namespace of the registry (default: localRegistry.namespace, "
        "else the context's namespace)",
    )


def _format_flag(p: argparse.ArgumentParser, formats: tuple[str, ...] = ("text", "json")) -> None:
    p.add_argument(
        "-o",
        "--output",
        "--format",
        dest="fmt",
        choices=formats,
        default=formats[0],
        help=f"output format (default {formats[0]}; --format is an alias)",
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


def _profile_flags(p: argparse.ArgumentParser) -> None:
    """DevSpace's ``-p/--profile`` (and its switch for ``activation``)."""
    p.add_argument(
        "-p",
        "--profile",
        dest="profiles",
        action="append",
        default=[],
        metavar="NAME",
        help="apply the DevSpace profile NAME (repeatable: applied in the order given, "
        "after the profiles their activation turns on)",
    )
    p.add_argument(
        "--disable-profile-activation",
        dest="profile_activation",
        action="store_false",
        help="turn no profile on through its activation (only those given with -p)",
    )


_Command = Callable[[str, str], argparse.ArgumentParser]


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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help, description=help)
        _output_flags(p)
        return p

    for add in (_hook_commands, _registry_commands, _build_commands, _project_commands):
        add(command)
    return parser


def _hook_commands(command: _Command) -> None:
    """The hook's commands, check and preview (PyYAML only)."""
    p = command("check", "validate localRegistry and preview rewrites (the pre-commit hook)")
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

    p = command("preview", "show how every image URL will be rewritten")
    _cluster_flags(p)  # the namespace for --cluster
    _profile_flags(p)
    _format_flag(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--node-port", type=_node_port, help="substitute this node port")
    group.add_argument(
        "--cluster",
        action="store_true",
        help="ask the current cluster for the registry's node port and KEP-1755 registry",
    )


def _registry_commands(command: _Command) -> None:
    """The registry in the cluster: up, down, status."""
    p = command("up", "deploy the registry into the cluster, wait until it is ready, reach it")
    _cluster_flags(p)
    _profile_flags(p)
    _format_flag(p)
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=120.0,
        help="seconds to wait until the registry is ready and answers here (default 120)",
    )
    _probe_flag(p)

    p = command("down", "remove the registry from the cluster")
    _cluster_flags(p)
    _format_flag(p)
    p.add_argument("--purge", action="store_true", help="also delete the registry's volume claims")

    p = command(
        "status",
        "the registry and the background watcher, per image "
        "(exit 1 when either cannot be told or is failing)",
    )
    _cluster_flags(p)
    _format_flag(p)
    _probe_flag(p)


def _probe_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="skip the pull probe (one pod per node pulls from the registry; cached)",
    )


def _build_commands(command: _Command) -> None:
    """Builds: one pass (build), and the watcher (watch)."""
    p = command("build", "one build-and-deliver pass, then write .devreg.env")
    _cluster_flags(p)
    _profile_flags(p)
    _format_flag(p)
    p.add_argument("keys", nargs="*", metavar="KEY", help="image keys (default: all)")
    _exec_flag(p, "once after the pass, when an image was delivered")
    p.add_argument(
        "--timeout", type=_positive_float, default=120.0, help="seconds to wait for the registry"
    )

    p = command("watch", "rebuild and deliver images when their sources change")
    _cluster_flags(p)
    _profile_flags(p)
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


def _project_commands(command: _Command) -> None:
    """The project's own state: stop the watcher, print the variables."""
    p = command("stop", "stop the background watcher")
    _config_flag(p)

    p = command("env", "print the image variables")
    _config_flag(p)
    _profile_flags(p)
    _format_flag(p, ("dotenv", "json"))
    p.add_argument("--image", metavar="KEY", help="only this image's variables")


class _VersionAction(argparse.Action):
    """``--version`` on stdout (``$(devreg --version)``), from the one place the
    version is written (no package metadata read: the hook's start-up counts)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from hookpkg import __version__

        print(f"devreg {__version__}")
        parser.exit()


class Invocation(NamedTuple):
    """One command line, parsed: the command, its keyword arguments, the
    format its result is reported in (its ``-o``, else its text form), the
    output settings, and ``--kubeconfig``."""

    command: str
    options: Mapping[str, Any]
    fmt: str = "text"
    console: Console = Console()
    kubeconfig: Path | None = None


def parse(argv: Sequence[str] | None = None) -> Invocation:
    """Raises SystemExit as argparse does: 2 for a usage error, 0 for --help."""
    args = vars(make_parser().parse_args(argv))
    command = args.pop("command")
    fmt = args.pop("fmt", "text")
    console = Console(args.pop("verbosity"), args.pop("color"))
    kubeconfig = args.pop("kubeconfig", None)
    return Invocation(command, MappingProxyType(args), fmt, console, kubeconfig)


def _command(name: str) -> Callable[..., Result]:
    module, func = COMMANDS[name]
    fn: Callable[..., Result] = getattr(importlib.import_module(module), func)
    return fn


def use_kubeconfig(path: Path) -> None:
    """``--kubeconfig PATH``: ``KUBECONFIG`` for this run, set before anything
    reads it. devreg's two kubeconfig readers (its own API client and the
    official client's streams) both read ``KUBECONFIG``
    (:func:`hookpkg.delivery.kubeconfig_paths`), and so does what devreg runs:
    ``--exec 'helm upgrade …'`` and the background watcher talk to the same
    cluster as devreg. Absolute, because the watcher runs from the config's
    directory."""
    if not path.is_file():
        raise FatalError(f"--kubeconfig {path}: no such file", exit_code=2)
    os.environ["KUBECONFIG"] = str(path.absolute())


def run(invocation: Invocation) -> int:
    """Run the command, report its result on stdout; its exit code."""
    from watcher import console
    from watcher.cli.errors import require_runtime
    from watcher.cli.report import write

    if invocation.command in RUNTIME_COMMANDS:
        require_runtime(f"devreg {invocation.command}")
    if invocation.kubeconfig is not None:
        use_kubeconfig(invocation.kubeconfig)
    result = _command(invocation.command)(**invocation.options)
    write(
        result,
        invocation.fmt,
        sys.stdout,
        quiet=invocation.console.quiet,
        color=console.use_color(invocation.console.color, sys.stdout),
    )
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    try:
        invocation = parse(argv)
    except SystemExit as e:  # argparse: 2 for usage errors, 0 for --help
        return int(e.code or 0)
    from watcher import console
    from watcher.cli.errors import run_command

    with console.settings(invocation.console):  # errors too are reported as the run says
        return run_command(lambda: run(invocation))


if __name__ == "__main__":
    raise SystemExit(main())
