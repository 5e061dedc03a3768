"""The sensor's exception type: a message the operator can act on (what, which value, the fix)."""


class SensorError(Exception):
    """Raised by library code; only the CLI prints it and turns it into an exit code."""

    exit_code = 1

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # extra lines, e.g. the tail of libbpf's log

    def __str__(self) -> str:
        return self.message
