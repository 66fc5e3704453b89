"""The one place that turns exceptions into exit codes (pre-commit's
``error_handler``): 1 for an expected error, 3 for a bug, 130 for ^C."""

from __future__ import annotations

import sys
from collections.abc import Callable

from hookpkg.errors import FatalError

EXIT_OK = 0
EXIT_USER = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


def run_command(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except FatalError as e:
        print(f"devreg: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("devreg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `devreg env | head`
        return EXIT_OK
    except Exception:
        import traceback  # only on the bug path: it costs ~9 ms to import

        print("devreg: internal error (a bug; please report it with this output):", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL
