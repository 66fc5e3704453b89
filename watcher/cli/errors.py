"""The one place that turns exceptions into exit codes (pre-commit's
``error_handler``): 1 for an expected error, 3 for a bug, 130 for ^C.

A runtime library missing (``pip install devreg`` without the ``runtime``
extra) is an expected error that says which ``pip install`` line fixes it:
``main`` checks before a runtime command starts, and a lazy import deeper
down (``preview --cluster`` reaching for the official client) lands here too.
"""

from __future__ import annotations

from collections.abc import Callable

from hookpkg.errors import FatalError
from watcher import console

EXIT_OK = 0
EXIT_USER = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

# What the ``runtime`` extra installs (pyproject.toml), by import name.
RUNTIME_PACKAGES = ("docker", "kubernetes", "watchdog", "requests")
RUNTIME_INSTALL = "pip install 'devreg[runtime]'"


class RuntimeMissing(FatalError):
    def __init__(self, what: str, missing: list[str]) -> None:
        super().__init__(
            f"{what} needs devreg's runtime, which is not installed "
            f"(missing: {', '.join(missing)}); install it with: {RUNTIME_INSTALL}"
        )


def require_runtime(what: str) -> None:
    """Raise :class:`RuntimeMissing` unless every runtime package can be imported
    (found, not imported: the command imports what it uses)."""
    from importlib.util import find_spec

    def installed(name: str) -> bool:
        try:
            return find_spec(name) is not None
        except (ImportError, ValueError):  # a broken or blocked installation
            return False

    missing = [name for name in RUNTIME_PACKAGES if not installed(name)]
    if missing:
        raise RuntimeMissing(what, missing)


def _runtime_module(error: ModuleNotFoundError) -> str | None:
    top = (error.name or "").partition(".")[0]
    return top if top in RUNTIME_PACKAGES else None


def run_command(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except FatalError as e:
        console.problem(f"devreg: error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        console.problem("devreg: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `devreg env | head`
        return EXIT_OK
    except PermissionError as e:  # a read-only .devreg or project: say which file
        where = f" {e.filename}" if e.filename else ""
        console.problem(f"devreg: error: cannot write or read{where}: {e.strerror or e}")
        return EXIT_USAGE
    except ModuleNotFoundError as e:
        name = _runtime_module(e)
        if name is None:
            return _internal_error()
        console.problem(f"devreg: error: {RuntimeMissing('this command', [name])}")
        return EXIT_USER
    except Exception:
        return _internal_error()


def _internal_error() -> int:
    import traceback  # only on the bug path: it costs ~9 ms to import

    console.problem("devreg: internal error (a bug; please report it with this output):")
    traceback.print_exc()
    return EXIT_INTERNAL
