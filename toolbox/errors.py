"""The error type every tooling module raises, and the `main()` wrapper that turns it into an exit code."""
from __future__ import annotations

import sys
from typing import Callable, Sequence


class EnduraError(Exception):
    """A failure the user can act on: a one-line message naming the value and the fix.

    Library code raises it; only `cli_main` (used by each module's `main()`) prints it and exits.
    """

    exit_code = 1

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        #: extra lines (e.g. the tail of a tool's stderr) printed after the one-line message
        self.detail = detail

    def __str__(self) -> str:
        # tracebacks and test failures show the detail too; cli_main prints message and detail apart
        return f"{self.message}\n{self.detail}" if self.detail else self.message


class ToolMissing(EnduraError):
    """An external tool is not installed; the message names the package that provides it."""

    exit_code = 127


def cli_main(func: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run `func(argv)` and turn an EnduraError into `error: <message>` on stderr and its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(func(args) or 0)
    except EnduraError as exc:
        if exc.detail:
            print(exc.detail.rstrip(), file=sys.stderr)
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
